import Foundation

/// write(2) until the whole buffer is written (retrying EINTR and short writes).
public func writeAll(_ fd: Int32, _ chunk: UnsafeRawBufferPointer, path: String) throws {
    var off = 0
    while off < chunk.count {
        let n = write(fd, chunk.baseAddress! + off, chunk.count - off)
        if n < 0 {
            if errno == EINTR { continue }
            throw LocalError("write \(path): \(String(cString: strerror(errno)))")
        }
        off += n
    }
}

/// Progress of a transfer: bytes done and the total when known.
public typealias TransferProgress = @Sendable (_ done: Int64, _ total: Int64?) -> Void

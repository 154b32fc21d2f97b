import CZlib

/// Incremental gzip (or zlib) decoding: feed compressed chunks as they arrive from the network, get
/// decompressed chunks out. Memory stays at zlib's window plus one output buffer. Concatenated
/// gzip members (what `cat a.gz b.gz` makes) are decoded one after another, as gzip(1) does.
public final class GzipStream {
    private var stream = z_stream()
    private var out = [UInt8](repeating: 0, count: 256 * 1024)
    private var open = false
    private var ended = false
    public private(set) var totalOut: Int64 = 0
    /// Refuse to produce more than this: a decompression bomb stops here.
    public let limit: Int64

    public init(limit: Int64 = .max) throws {
        self.limit = limit
        // 15 + 32: a 32 KiB window, and detect gzip or zlib headers.
        guard drctl_inflate_init2(&stream, 15 + 32) == Z_OK else { throw DecompressionError(description: "zlib: inflateInit failed") }
        open = true
    }

    deinit { if open { inflateEnd(&stream) } }

    /// Decompresses `input`, handing every produced chunk to `sink`.
    public func feed(_ input: UnsafeRawBufferPointer, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard input.count > 0 else { return }
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: UInt8.self))
        stream.avail_in = uInt(input.count)
        while stream.avail_in > 0 {
            if ended {
                // Another gzip member follows the one that ended.
                inflateReset(&stream)
                ended = false
            }
            let rc: Int32 = out.withUnsafeMutableBufferPointer { o in
                stream.next_out = o.baseAddress
                stream.avail_out = uInt(o.count)
                return inflate(&stream, Z_NO_FLUSH)
            }
            let produced = out.count - Int(stream.avail_out)
            totalOut += Int64(produced)
            guard totalOut <= limit else { throw DecompressionError(description: "decompressed data exceeds \(limit) bytes") }
            if produced > 0 { try out.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<produced])) } }
            switch rc {
            case Z_STREAM_END: ended = true
            case Z_OK, Z_BUF_ERROR: if produced == 0 && stream.avail_in > 0 && rc == Z_BUF_ERROR { throw DecompressionError(description: "gzip data is corrupt") }
            default:
                let msg = stream.msg.map { String(cString: $0) } ?? "error \(rc)"
                throw DecompressionError(description: "gzip data is corrupt: \(msg)")
            }
        }
    }

    /// Call after the last input: a stream that stopped mid-member is truncated.
    public func finish() throws {
        guard ended else { throw DecompressionError(description: "gzip data is truncated") }
    }
}

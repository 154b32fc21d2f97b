import CZlib

public struct DecompressionError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// gzip (and zlib) decoding over zlib.
public enum Gzip {
    /// Decompresses a whole (small) buffer; refuses to produce more than `limit` bytes, so a
    /// decompression bomb costs nothing.
    public static func decompress(_ input: [UInt8], limit: Int) throws -> [UInt8] {
        var stream = z_stream()
        // 15 + 32: a 32 KiB window, and detect gzip or zlib headers.
        guard drctl_inflate_init2(&stream, 15 + 32) == Z_OK else { throw DecompressionError(description: "zlib: inflateInit failed") }
        defer { inflateEnd(&stream) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var input = input
        let total = input.count
        return try input.withUnsafeMutableBufferPointer { inp in
            stream.next_in = inp.baseAddress
            stream.avail_in = uInt(total)
            while true {
                let rc: Int32 = chunk.withUnsafeMutableBufferPointer { c in
                    stream.next_out = c.baseAddress
                    stream.avail_out = uInt(c.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                guard out.count + produced <= limit else {
                    throw DecompressionError(description: "decompressed data exceeds \(limit) bytes")
                }
                out += chunk[0..<produced]
                switch rc {
                case Z_STREAM_END:
                    return out
                case Z_OK:
                    if stream.avail_in == 0 && produced == 0 { throw DecompressionError(description: "gzip data is truncated") }
                case Z_BUF_ERROR where stream.avail_in == 0:
                    throw DecompressionError(description: "gzip data is truncated")
                default:
                    let msg = stream.msg.map { String(cString: $0) } ?? "error \(rc)"
                    throw DecompressionError(description: "gzip data is corrupt: \(msg)")
                }
            }
        }
    }
}

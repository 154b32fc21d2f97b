public struct DecompressionError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// gzip (and zlib) decoding over zlib.
public enum Gzip {
    /// Decompresses a whole (small) buffer; refuses to produce more than `limit` bytes, so a
    /// decompression bomb costs nothing.
    public static func decompress(_ input: [UInt8], limit: Int) throws -> [UInt8] {
        let stream = try GzipStream(limit: Int64(limit))
        var out: [UInt8] = []
        try input.withUnsafeBytes { try stream.feed($0) { out += $0 } }
        try stream.finish()
        return out
    }
}

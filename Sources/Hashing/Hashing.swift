import CLibCrypto

/// Incremental message digests over OpenSSL's EVP API (SHA-256 for SigV4, MD5 for S3 ETags).
public struct Digest: ~Copyable {
    public enum Algorithm: Sendable { case sha256, md5 }
    private let ctx: OpaquePointer

    public init(_ algorithm: Algorithm) {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed: out of memory") }
        let md = algorithm == .sha256 ? EVP_sha256() : EVP_md5()
        guard EVP_DigestInit_ex(ctx, md, nil) == 1 else { fatalError("EVP_DigestInit_ex failed") }
        self.ctx = ctx
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        EVP_DigestUpdate(ctx, base, bytes.count)
    }

    public mutating func update<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        let array = Array(bytes)
        array.withUnsafeBytes { update($0) }
    }

    /// Finishes the digest. The value is consumed: a finished digest cannot be updated again.
    public consuming func finish() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &out, &len)
        return Array(out.prefix(Int(len)))
    }
}

public enum Hash {
    public static func sha256<S: Sequence>(_ bytes: S) -> [UInt8] where S.Element == UInt8 {
        var d = Digest(.sha256); d.update(bytes); return d.finish()
    }

    public static func md5<S: Sequence>(_ bytes: S) -> [UInt8] where S.Element == UInt8 {
        var d = Digest(.md5); d.update(bytes); return d.finish()
    }

    public static func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        _ = key.withUnsafeBufferPointer { k in
            data.withUnsafeBufferPointer { d in
                HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), d.baseAddress, d.count, &out, &len)
            }
        }
        return Array(out.prefix(Int(len)))
    }
}

extension Array where Element == UInt8 {
    public var hex: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var s = [UInt8](); s.reserveCapacity(count * 2)
        for b in self { s.append(digits[Int(b >> 4)]); s.append(digits[Int(b & 0x0f)]) }
        return String(decoding: s, as: UTF8.self)
    }

    public var base64: String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out = [UInt8](); out.reserveCapacity((count + 2) / 3 * 4)
        var i = 0
        while i < count {
            let b0 = self[i], b1 = i + 1 < count ? self[i + 1] : 0, b2 = i + 2 < count ? self[i + 2] : 0
            out.append(table[Int(b0 >> 2)])
            out.append(table[Int((b0 & 0x03) << 4 | b1 >> 4)])
            out.append(i + 1 < count ? table[Int((b1 & 0x0f) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(i + 2 < count ? table[Int(b2 & 0x3f)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A SHA-256 fed from closures that cannot hold a noncopyable value (streamed downloads).
public final class SHA256Stream: @unchecked Sendable {
    private var digest: Digest? = Digest(.sha256)
    public private(set) var count: Int64 = 0

    public init() {}

    public func update(_ bytes: UnsafeRawBufferPointer) {
        count += Int64(bytes.count)
        digest!.update(bytes)
    }

    /// The hex digest; the stream cannot be fed afterwards.
    public func finish() -> String {
        guard let d = digest.take() else { fatalError("SHA256Stream finished twice") }
        return d.finish().hex
    }
}

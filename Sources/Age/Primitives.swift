import CLibCrypto
import Hashing

/// The primitives of the age format, over the libcrypto drctl already links: X25519,
/// ChaCha20-Poly1305, HKDF-SHA-256, scrypt, and the system's CSPRNG.
enum Primitives {
    static func random(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        guard RAND_bytes(&out, Int32(n)) == 1 else { fatalError("RAND_bytes failed: no randomness") }
        return out
    }

    /// X25519(scalar, point) (RFC 7748); `point` nil: the base point.
    static func x25519(_ scalar: [UInt8], _ point: [UInt8]?) -> [UInt8]? {
        guard scalar.count == 32, let key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, scalar, 32) else { return nil }
        defer { EVP_PKEY_free(key) }
        guard let point else {
            var out = [UInt8](repeating: 0, count: 32), len = 32
            return EVP_PKEY_get_raw_public_key(key, &out, &len) == 1 && len == 32 ? out : nil
        }
        guard point.count == 32, let peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nil, point, 32) else { return nil }
        defer { EVP_PKEY_free(peer) }
        guard let ctx = EVP_PKEY_CTX_new(key, nil) else { return nil }
        defer { EVP_PKEY_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: 32), len = 32
        guard EVP_PKEY_derive_init(ctx) == 1, EVP_PKEY_derive_set_peer(ctx, peer) == 1, EVP_PKEY_derive(ctx, &out, &len) == 1, len == 32 else { return nil }
        return out
    }

    /// HKDF-SHA-256 (RFC 5869), 32 bytes: one HMAC to extract, one to expand.
    static func hkdf(ikm: [UInt8], salt: [UInt8], info: String) -> [UInt8] {
        let prk = Hash.hmacSHA256(key: salt, data: ikm)
        return Hash.hmacSHA256(key: prk, data: Array(info.utf8) + [1])
    }

    /// ChaCha20-Poly1305 (RFC 7539) with a 12-byte nonce: ciphertext then the 16-byte tag.
    static func seal(key: [UInt8], nonce: [UInt8], _ plaintext: [UInt8]) -> [UInt8] {
        guard let ctx = EVP_CIPHER_CTX_new() else { fatalError("EVP_CIPHER_CTX_new failed") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: plaintext.count + 16)
        var n: Int32 = 0, m: Int32 = 0
        guard EVP_EncryptInit_ex(ctx, EVP_chacha20_poly1305(), nil, key, nonce) == 1,
              EVP_EncryptUpdate(ctx, &out, &n, plaintext, Int32(plaintext.count)) == 1 || plaintext.isEmpty,
              out.withUnsafeMutableBufferPointer({ EVP_EncryptFinal_ex(ctx, $0.baseAddress! + Int(n), &m) }) == 1,
              out.withUnsafeMutableBufferPointer({ EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, $0.baseAddress! + plaintext.count) }) == 1
        else { fatalError("ChaCha20-Poly1305 encryption failed") }
        return out
    }

    /// The plaintext, or nil when the tag does not authenticate it.
    static func open(key: [UInt8], nonce: [UInt8], _ sealed: ArraySlice<UInt8>) -> [UInt8]? {
        guard sealed.count >= 16, let ctx = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let body = Array(sealed.dropLast(16))
        var tag = Array(sealed.suffix(16))
        var out = [UInt8](repeating: 0, count: body.count + 16)
        var n: Int32 = 0, m: Int32 = 0
        guard EVP_DecryptInit_ex(ctx, EVP_chacha20_poly1305(), nil, key, nonce) == 1 else { return nil }
        if !body.isEmpty { guard EVP_DecryptUpdate(ctx, &out, &n, body, Int32(body.count)) == 1 else { return nil } }
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, &tag) == 1,
              out.withUnsafeMutableBufferPointer({ EVP_DecryptFinal_ex(ctx, $0.baseAddress! + Int(n), &m) }) == 1 else { return nil }
        return Array(out.prefix(body.count))
    }

    /// scrypt (RFC 7914), 32 bytes, r = 8, p = 1.
    static func scrypt(password: [UInt8], salt: [UInt8], logN: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 32)
        let n = UInt64(1) << UInt64(logN)
        let mem = UInt64(128 * 8) * n + (1 << 20)
        let pass = password.map { CChar(bitPattern: $0) } + [0]
        let ok = EVP_PBE_scrypt(pass, password.count, salt, salt.count, n, 8, 1, mem, &out, 32)
        return ok == 1 ? out : nil
    }
}

import Foundation
import Hashing

/// The age file format (age-encryption.org/v1, c2sp.org/age), so that any object drctl
/// encrypts can be decrypted on the worst night with the stock `age` tool, and objects `age`
/// encrypted are read by drctl.
public enum Age {
    public static let chunkSize = 64 << 10
    static let version = "age-encryption.org/v1"

    public struct Failure: Error, CustomStringConvertible, Equatable {
        public let description: String
        init(_ d: String) { description = d }
    }

    /// An X25519 recipient: `age1…`.
    public struct Recipient: Sendable, Hashable, CustomStringConvertible {
        public let publicKey: [UInt8]
        public init(_ text: String) throws {
            guard let (hrp, data) = Bech32.decode(text), hrp == "age", data.count == 32, text == text.lowercased() else {
                // Never echo what may be a private key pasted in the wrong place.
                if text.uppercased().hasPrefix("AGE-SECRET-KEY-") {
                    throw Failure("this is an age identity, a private key: it does not belong here (and should be rotated now); give its recipient, `age-keygen -y FILE`")
                }
                throw Failure("'\(text.prefix(80))' is not an age X25519 recipient (age1…)")
            }
            publicKey = data
        }
        init(publicKey: [UInt8]) { self.publicKey = publicKey }
        public var description: String { Bech32.encode(hrp: "age", publicKey) }
    }

    /// An X25519 identity: `AGE-SECRET-KEY-1…`. Its description is its recipient: the secret is
    /// never printed.
    public struct Identity: Sendable, CustomStringConvertible {
        let secret: [UInt8]
        public let recipient: Recipient
        public init(_ text: String) throws {
            guard let (hrp, data) = Bech32.decode(text.trimmingCharacters(in: .whitespaces)), hrp == "age-secret-key-", data.count == 32,
                  let pub = Primitives.x25519(data, nil) else {
                throw Failure("not an age X25519 identity (AGE-SECRET-KEY-1…)")
            }
            secret = data
            recipient = Recipient(publicKey: pub)
        }
        public static func generate() -> (Identity, String) {
            let s = Bech32.encode(hrp: "age-secret-key-", Primitives.random(32)).uppercased()
            return (try! Identity(s), s)
        }
        /// Identities from an age identity file: one per line, `#` comments.
        public static func file(_ text: String) throws -> [Identity] {
            try text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") }.map(Identity.init)
        }
        public var description: String { "identity of \(recipient)" }
    }

    // MARK: base64 without padding, canonical

    static func b64(_ b: [UInt8]) -> String { Data(b).base64EncodedString().replacingOccurrences(of: "=", with: "") }
    static func unb64(_ s: Substring) -> [UInt8]? {
        guard !s.contains("=") else { return nil }
        let padded = String(s) + String(repeating: "=", count: (4 - s.count % 4) % 4)
        guard let d = Data(base64Encoded: padded), b64(Array(d)) == s else { return nil }
        return Array(d)
    }

    // MARK: header

    struct Stanza { var args: [String]; var body: [UInt8] }

    static func headerBytes(_ stanzas: [Stanza], fileKey: [UInt8]) -> [UInt8] {
        var text = version + "\n"
        for s in stanzas {
            text += "-> " + s.args.joined(separator: " ") + "\n"
            let enc = b64(s.body)
            var i = enc.startIndex
            while true {
                let j = enc.index(i, offsetBy: 64, limitedBy: enc.endIndex) ?? enc.endIndex
                text += enc[i..<j] + "\n"
                if enc.distance(from: i, to: j) < 64 { break }
                i = j
            }
        }
        text += "---"
        let mac = Hash.hmacSHA256(key: Primitives.hkdf(ikm: fileKey, salt: [], info: "header"), data: Array(text.utf8))
        return Array((text + " " + b64(mac) + "\n").utf8)
    }

    static func x25519Stanza(_ r: Recipient, fileKey: [UInt8]) -> Stanza {
        let ephemeral = Primitives.random(32)
        let share = Primitives.x25519(ephemeral, nil)!
        guard let shared = Primitives.x25519(ephemeral, r.publicKey), shared.contains(where: { $0 != 0 }) else { fatalError("X25519 with a low-order recipient") }
        let key = Primitives.hkdf(ikm: shared, salt: share + r.publicKey, info: "age-encryption.org/v1/X25519")
        return Stanza(args: ["X25519", b64(share)], body: Primitives.seal(key: key, nonce: [UInt8](repeating: 0, count: 12), fileKey))
    }

    /// Parses the header at the start of `data`: its stanzas, the MAC'd text and MAC, and where
    /// the payload starts; nil when more bytes are needed.
    static func parseHeader(_ data: [UInt8]) throws -> (stanzas: [Stanza], macd: [UInt8], mac: [UInt8], end: Int)? {
        var lines: [(Int, Int)] = []   // [start, end) without LF
        var start = 0
        var i = 0
        func line() -> String? {
            while i < data.count && data[i] != 0x0A { i += 1 }
            guard i < data.count else { return nil }
            let s = String(decoding: data[start..<i], as: UTF8.self)
            lines.append((start, i)); i += 1; start = i
            return s
        }
        if data.count > 1 << 20 { throw Failure("the age header is longer than 1 MiB: not an age file drctl reads") }
        guard let first = line() else { return nil }
        guard first == version else { throw Failure("not an age-encryption.org/v1 file") }
        var stanzas: [Stanza] = []
        while true {
            let mark = start
            guard let l = line() else { return nil }
            if l.hasPrefix("--- ") {
                guard let mac = unb64(l.dropFirst(4)), mac.count == 32 else { throw Failure("age header: malformed MAC line") }
                return (stanzas, Array(data[0..<(mark + 3)]), mac, i)
            }
            guard l.hasPrefix("-> ") else { throw Failure("age header: a line that is neither a stanza nor the MAC") }
            let args = l.dropFirst(3).split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard !args.isEmpty, args.allSatisfy({ !$0.isEmpty }) else { throw Failure("age header: empty stanza argument") }
            var body = ""
            while true {
                guard let b = line() else { return nil }
                guard b.count <= 64 else { throw Failure("age header: stanza body line longer than 64 columns") }
                body += b
                if b.count < 64 { break }
            }
            guard let bytes = unb64(Substring(body)) else { throw Failure("age header: stanza body is not canonical base64") }
            stanzas.append(Stanza(args: args, body: bytes))
        }
    }

    /// A payload chunk's nonce: an 11-byte big-endian counter, then 1 for the final chunk, else 0.
    static func chunkNonce(_ counter: UInt64, last: Bool) -> [UInt8] {
        var n = [UInt8](repeating: 0, count: 12)
        for b in 0..<8 { n[10 - b] = UInt8((counter >> (8 * UInt64(b))) & 0xff) }
        n[11] = last ? 1 : 0
        return n
    }

    // MARK: encryption

    /// Streaming encryption: `header` first, then `update`'s output, then `finish`'s.
    public final class Encryptor {
        let key: [UInt8]
        public let header: [UInt8]
        var buffer: [UInt8] = []
        var counter: UInt64 = 0

        public init(recipients: [Recipient]) throws {
            guard !recipients.isEmpty else { throw Failure("no age recipients to encrypt to") }
            let fileKey = Primitives.random(16)
            let nonce = Primitives.random(16)
            header = headerBytes(recipients.map { x25519Stanza($0, fileKey: fileKey) }, fileKey: fileKey) + nonce
            key = Primitives.hkdf(ikm: fileKey, salt: nonce, info: "payload")
        }

        /// A passphrase (scrypt, work factor 2^logN): it must be the file's only stanza.
        public init(passphrase: String, logN: Int = 18) throws {
            let fileKey = Primitives.random(16), nonce = Primitives.random(16), salt = Primitives.random(16)
            guard let wrap = Primitives.scrypt(password: Array(passphrase.utf8), salt: Array("age-encryption.org/v1/scrypt".utf8) + salt, logN: logN) else {
                throw Failure("scrypt failed")
            }
            let stanza = Stanza(args: ["scrypt", b64(salt), String(logN)], body: Primitives.seal(key: wrap, nonce: [UInt8](repeating: 0, count: 12), fileKey))
            header = headerBytes([stanza], fileKey: fileKey) + nonce
            key = Primitives.hkdf(ikm: fileKey, salt: nonce, info: "payload")
        }

        func nonce(last: Bool) -> [UInt8] { chunkNonce(counter, last: last) }

        /// Encrypted chunks for what `bytes` completes; a full chunk is held back until more
        /// follows, since the final chunk is marked as such.
        public func update(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
            buffer.append(contentsOf: bytes)
            var out: [UInt8] = []
            var offset = 0
            while buffer.count - offset > chunkSize {
                out += Primitives.seal(key: key, nonce: nonce(last: false), Array(buffer[offset..<(offset + chunkSize)]))
                counter += 1
                offset += chunkSize
            }
            if offset > 0 { buffer.removeFirst(offset) }
            return out
        }

        public func finish() -> [UInt8] {
            defer { buffer = [] }
            return Primitives.seal(key: key, nonce: nonce(last: true), buffer)
        }
    }

    public static func encrypt(_ plaintext: [UInt8], to recipients: [Recipient]) throws -> [UInt8] {
        let e = try Encryptor(recipients: recipients)
        return e.header + plaintext.withUnsafeBytes { e.update($0) } + e.finish()
    }

    // MARK: decryption

    /// Streaming decryption: `feed` ciphertext as it comes, `finish` at its end. Every chunk is
    /// authenticated before its plaintext is passed on; a file that ends without its final
    /// chunk, or was changed, reordered or truncated anywhere, fails.
    public final class Decryptor {
        let identities: [Identity]
        let passphrase: String?
        var key: [UInt8]?
        var pending: [UInt8] = []
        var counter: UInt64 = 0
        var finished = false
        var chunks = 0

        public init(identities: [Identity], passphrase: String? = nil) {
            self.identities = identities
            self.passphrase = passphrase
        }

        func unwrap(_ stanzas: [Stanza], macd: [UInt8], mac: [UInt8]) throws -> [UInt8] {
            let zero = [UInt8](repeating: 0, count: 12)
            var fileKey: [UInt8]?
            if stanzas.contains(where: { $0.args.first == "scrypt" }) {
                guard stanzas.count == 1 else { throw Failure("age header: an scrypt stanza beside others") }
                let s = stanzas[0]
                guard s.args.count == 3, let salt = unb64(Substring(s.args[1])), salt.count == 16, s.args[2].range(of: #"^[1-9][0-9]*$"#, options: .regularExpression) != nil,
                      let logN = Int(s.args[2]), s.body.count == 32 else { throw Failure("age header: malformed scrypt stanza") }
                guard logN <= 22 else { throw Failure("age header: scrypt work factor 2^\(logN) is beyond drctl's limit (2^22)") }
                guard let passphrase else { throw Failure("the object is encrypted with a passphrase (scrypt), and none was given") }
                guard let wrap = Primitives.scrypt(password: Array(passphrase.utf8), salt: Array("age-encryption.org/v1/scrypt".utf8) + salt, logN: logN),
                      let k = Primitives.open(key: wrap, nonce: zero, s.body[...]) else { throw Failure("the passphrase does not decrypt this object") }
                fileKey = k
            } else {
                let x = stanzas.filter { $0.args.first == "X25519" }
                search: for s in x {
                    guard s.args.count == 2, let share = unb64(Substring(s.args[1])), share.count == 32, s.body.count == 32 else { throw Failure("age header: malformed X25519 stanza") }
                    for id in identities {
                        guard let shared = Primitives.x25519(id.secret, share), shared.contains(where: { $0 != 0 }) else { continue }
                        let wrap = Primitives.hkdf(ikm: shared, salt: share + id.recipient.publicKey, info: "age-encryption.org/v1/X25519")
                        if let k = Primitives.open(key: wrap, nonce: zero, s.body[...]), k.count == 16 { fileKey = k; break search }
                    }
                }
                guard fileKey != nil else {
                    throw Failure("none of the \(identities.count) age identities given (\(identities.map { "\($0.recipient)" }.joined(separator: ", "))) is a recipient of this object (it has \(x.count) X25519 recipient stanza(s)\(stanzas.count > x.count ? " and \(stanzas.count - x.count) of other types" : ""))")
                }
            }
            guard let fileKey, Hash.hmacSHA256(key: Primitives.hkdf(ikm: fileKey, salt: [], info: "header"), data: macd) == mac else {
                throw Failure("age header: the MAC does not match (the header was changed)")
            }
            return fileKey
        }

        func nonce(last: Bool) -> [UInt8] { chunkNonce(counter, last: last) }

        public func feed(_ bytes: UnsafeRawBufferPointer, _ output: ([UInt8]) throws -> Void) throws {
            guard !finished else { throw Failure("age: data after the final chunk") }
            pending.append(contentsOf: bytes)
            if key == nil {
                guard let h = try parseHeader(pending) else { return }
                guard pending.count >= h.end + 16 else { return }
                let fileKey = try unwrap(h.stanzas, macd: h.macd, mac: h.mac)
                key = Primitives.hkdf(ikm: fileKey, salt: Array(pending[h.end..<(h.end + 16)]), info: "payload")
                pending.removeFirst(h.end + 16)
            }
            let sealed = chunkSize + 16
            var offset = 0
            while pending.count - offset > sealed {
                guard let plain = Primitives.open(key: key!, nonce: nonce(last: false), pending[offset..<(offset + sealed)]) else {
                    throw Failure("age: chunk \(counter) does not authenticate (the object was changed, reordered or truncated)")
                }
                try output(plain)
                counter += 1; chunks += 1
                offset += sealed
            }
            if offset > 0 { pending.removeFirst(offset) }
        }

        public func finish(_ output: ([UInt8]) throws -> Void) throws {
            guard let key else { throw Failure("age: the object ends inside its header (truncated)") }
            guard pending.count >= 16, let plain = Primitives.open(key: key, nonce: nonce(last: true), pending[...]) else {
                throw Failure("age: the final chunk does not authenticate (the object was changed or truncated)")
            }
            guard !plain.isEmpty || chunks == 0 else { throw Failure("age: an empty final chunk after others") }
            finished = true
            pending = []
            try output(plain)
        }
    }

    public static func decrypt(_ ciphertext: [UInt8], identities: [Identity], passphrase: String? = nil) throws -> [UInt8] {
        let d = Decryptor(identities: identities, passphrase: passphrase)
        var out: [UInt8] = []
        try ciphertext.withUnsafeBytes { try d.feed($0) { out += $0 } }
        try d.finish { out += $0 }
        return out
    }
}

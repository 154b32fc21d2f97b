import Foundation
import Hashing
import Support

/// What reading a record found out about who wrote it.
public enum RecordAuthenticity: Sendable, Equatable, CustomStringConvertible {
    /// Sealed with one of drctl's keys: drctl wrote it, for this kind and this name.
    case authentic(key: String)
    /// No seal at all.
    case unsigned
    /// Sealed with a key id drctl does not hold.
    case unknownKey(String)
    /// The seal does not match the record (changed, moved to another name, or made up).
    case forged

    public var isAuthentic: Bool { if case .authentic = self { return true }; return false }

    public var description: String {
        switch self {
        case .authentic(let k): return "authentic (key \(k))"
        case .unsigned: return "unauthenticated: not sealed"
        case .unknownKey(let k): return "unauthenticated: sealed with key \(k), which drctl does not hold"
        case .forged: return "unauthenticated: its seal does not match (changed, moved or forged)"
        }
    }
}

/// drctl's records in a bucket (drill evidence, copy records, slot claims, prune journals)
/// carry an HMAC-SHA256 under a key only drctl holds, so what steers a deletion, a skipped job
/// or a "healthy" can be told from what anyone with the bucket's keys wrote. Pure.
///
/// The MAC covers the record's canonical JSON (sorted keys, no whitespace, as drctl encodes it),
/// its kind and its name (its key below drctl's prefix): a sealed record copied to another
/// name, or read as another kind, does not verify. The seal is one more member of the object,
/// `drctlSeal`, which readers that do not check it ignore.
public enum RecordSeal {
    public struct Seal: Codable, Sendable, Equatable {
        public var key: String
        public var hmac: String
    }

    struct Envelope: Decodable { var drctlSeal: Seal? }

    static let member = "drctlSeal"

    /// The bytes the MAC is over.
    static func message(kind: String, name: String, canonical: [UInt8]) -> [UInt8] {
        Array("drctl-record-v1\n\(kind)\n\(name)\n".utf8) + canonical
    }

    public static func canonical<T: Encodable>(_ value: T) throws -> [UInt8] {
        Array(try JSONCoding.encoder(pretty: false).encode(value))
    }

    public static func mac(_ canonical: [UInt8], kind: String, name: String, key: RecordKey) -> String {
        Hash.hmacSHA256(key: key.secret, data: message(kind: kind, name: name, canonical: canonical)).hex
    }

    /// `value` as sealed JSON. Throws when no key signs: a record that decides something later
    /// is not written unsealed.
    public static func seal<T: Encodable>(_ value: T, kind: String, name: String, keys: RecordKeyring) throws -> [UInt8] {
        guard let key = keys.signing else { throw RecordKeyError("cannot seal the \(kind) record \(name): \(keys.cannotSign ?? "no key")") }
        let body = try canonical(value)
        let seal = try canonical(Seal(key: key.id, hmac: mac(body, kind: kind, name: name, key: key)))
        guard body.first == UInt8(ascii: "{"), body.last == UInt8(ascii: "}") else {
            throw RecordKeyError("the \(kind) record \(name) is not a JSON object")
        }
        let head = Array("{\"\(member)\":".utf8) + seal
        return body.count == 2 ? head + [UInt8(ascii: "}")] : head + [UInt8(ascii: ",")] + body.dropFirst()
    }

    /// The record in `bytes` and whether drctl sealed it as this kind under this name. A record
    /// that does not decode is nil (with `.forged`: nothing of it is believed).
    public static func open<T: Codable>(_ bytes: [UInt8], as type: T.Type, kind: String, name: String,
                                        keys: RecordKeyring) -> (value: T?, authenticity: RecordAuthenticity) {
        let data = Data(bytes)
        guard let value = try? JSONCoding.decoder().decode(T.self, from: data) else { return (nil, .forged) }
        return (value, verify(value, seal: (try? JSONDecoder().decode(Envelope.self, from: data))?.drctlSeal, kind: kind, name: name, keys: keys))
    }

    /// Whether `seal` is drctl's for `value` as this kind and name.
    public static func verify<T: Encodable>(_ value: T, seal: Seal?, kind: String, name: String, keys: RecordKeyring) -> RecordAuthenticity {
        guard let seal else { return .unsigned }
        guard let key = keys.key(id: seal.key) else { return .unknownKey(seal.key) }
        guard let body = try? canonical(value) else { return .forged }
        return constantTimeEqual(Array(mac(body, kind: kind, name: name, key: key).utf8), Array(seal.hmac.lowercased().utf8))
            ? .authentic(key: key.id) : .forged
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var d: UInt8 = 0
        for i in a.indices { d |= a[i] ^ b[i] }
        return d == 0
    }
}

/// The kinds of record drctl seals, as named in the MAC.
public enum RecordKind {
    public static let evidence = "evidence"
    public static let copyRecord = "copy-record"
    public static let slotClaim = "slot-claim"
    public static let slotEnd = "slot-end"
    public static let prunePlan = "prune-plan"
    public static let pruneOutcome = "prune-outcome"
}

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
/// The MAC covers the record's exact bytes as stored (its JSON object without the seal), its
/// kind and its name (its key below drctl's prefix): a sealed record copied to another name, or
/// read as another kind, does not verify, and verifying never re-encodes anything (so a reader
/// of another version, which may not know every field, judges the same bytes). The seal is the
/// object's first member, `drctlSeal`, which readers that do not check it ignore:
/// `{"drctlSeal":{"hmac":"…","key":"…"},` followed by the record's own members.
public enum RecordSeal {
    public struct Seal: Codable, Sendable, Equatable {
        public var hmac: String
        public var key: String
    }

    static let head = Array("{\"drctlSeal\":".utf8)

    /// The bytes the MAC is over.
    static func message(kind: String, name: String, body: [UInt8]) -> [UInt8] {
        Array("drctl-record-v1\n\(kind)\n\(name)\n".utf8) + body
    }

    public static func mac(_ body: [UInt8], kind: String, name: String, key: RecordKey) -> String {
        Hash.hmacSHA256(key: key.secret, data: message(kind: kind, name: name, body: body)).hex
    }

    /// `value` as sealed JSON. Throws when no key signs: a record that decides something later
    /// is not written unsealed.
    public static func seal<T: Encodable>(_ value: T, kind: String, name: String, keys: RecordKeyring) throws -> [UInt8] {
        guard let key = keys.signing else { throw RecordKeyError("cannot seal the \(kind) record \(name): \(keys.cannotSign ?? "no key")") }
        let body = Array(try JSONCoding.encoder(pretty: false).encode(value))
        guard body.first == UInt8(ascii: "{"), body.last == UInt8(ascii: "}") else {
            throw RecordKeyError("the \(kind) record \(name) is not a JSON object")
        }
        let seal = "{\"hmac\":\"\(mac(body, kind: kind, name: name, key: key))\",\"key\":\"\(key.id)\"}"
        return head + Array(seal.utf8) + (body.count == 2 ? [UInt8(ascii: "}")] : [UInt8(ascii: ",")] + body.dropFirst())
    }

    /// The seal and the record's own bytes (`{…}` without the seal), or nil when the object does
    /// not begin with a seal as `seal` writes it.
    static func split(_ bytes: [UInt8]) -> (Seal, [UInt8])? {
        guard bytes.starts(with: head), let close = bytes[head.count...].firstIndex(of: UInt8(ascii: "}")), close + 1 < bytes.count,
              let seal = try? JSONDecoder().decode(Seal.self, from: Data(bytes[head.count...close])),
              // Exactly as `seal` writes it: a seal with other fields, another spelling or case
              // is not one (the MAC covers the body, so the seal itself admits no variant).
              Array("{\"hmac\":\"\(seal.hmac)\",\"key\":\"\(seal.key)\"}".utf8) == Array(bytes[head.count...close]),
              seal.hmac.count == 64, seal.hmac.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        switch bytes[close + 1] {
        case UInt8(ascii: "}") where close + 2 == bytes.count: return (seal, Array("{}".utf8))
        case UInt8(ascii: ","): return (seal, [UInt8(ascii: "{")] + bytes[(close + 2)...])
        default: return nil
        }
    }

    /// The record in `bytes` and whether drctl sealed it as this kind under this name. The value
    /// is decoded from the very bytes the MAC covers. A record that does not decode is nil.
    public static func open<T: Decodable>(_ bytes: [UInt8], as type: T.Type, kind: String, name: String,
                                          keys: RecordKeyring) -> (value: T?, authenticity: RecordAuthenticity) {
        guard let (seal, body) = split(bytes) else {
            return ((try? JSONCoding.decoder().decode(T.self, from: Data(bytes))), (try? JSONSerialization.jsonObject(with: Data(bytes))) == nil ? .forged : .unsigned)
        }
        let value = try? JSONCoding.decoder().decode(T.self, from: Data(body))
        guard let key = keys.key(id: seal.key) else { return (value, .unknownKey(seal.key)) }
        let ok = constantTimeEqual(Array(mac(body, kind: kind, name: name, key: key).utf8), Array(seal.hmac.utf8))
        return (value, ok && value != nil ? .authentic(key: key.id) : .forged)
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
    public static let rehearsal = "rehearsal"
    public static let copyRecord = "copy-record"
    public static let copyJournal = "copy-journal"
    public static let slotClaim = "slot-claim"
    public static let slotEnd = "slot-end"
    public static let prunePlan = "prune-plan"
    public static let pruneOutcome = "prune-outcome"
}

import Foundation
import Testing
@testable import Records
import Support

struct RecordSealTests {
    struct Claim: Codable, Equatable {
        var job: String
        var at: Date
        var count: Int
        var ratio: Double?
    }

    static func key(_ id: String, _ byte: UInt8) -> RecordKey { RecordKey(id: id, secret: [UInt8](repeating: byte, count: 32)) }
    let old = RecordKeyring(keys: [key("old", 1)])
    let rotated = RecordKeyring(keys: [key("old", 1), key("new", 2)])
    let claim = Claim(job: "drill-app", at: Date(timeIntervalSince1970: 1_800_000_000.123456), count: 3, ratio: 0.1)

    @Test func aSealedRecordVerifiesAsItsKindAndNameOnly() throws {
        let bytes = try RecordSeal.seal(claim, kind: "slot-claim", name: "slots/a/1.json", keys: old)
        let (value, how) = RecordSeal.open(bytes, as: Claim.self, kind: "slot-claim", name: "slots/a/1.json", keys: old)
        #expect(value == claim)
        #expect(how == .authentic(key: "old"))
        // Moved to another name (a future slot), or read as another kind: not drctl's.
        #expect(RecordSeal.open(bytes, as: Claim.self, kind: "slot-claim", name: "slots/a/2.json", keys: old).authenticity == .forged)
        #expect(RecordSeal.open(bytes, as: Claim.self, kind: "slot-end", name: "slots/a/1.json", keys: old).authenticity == .forged)
    }

    @Test func anyChangeOfAValueBreaksTheSeal() throws {
        let bytes = try RecordSeal.seal(claim, kind: "k", name: "n", keys: old)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains("\"count\":3"))
        let changed = Array(text.replacingOccurrences(of: "\"count\":3", with: "\"count\":4").utf8)
        #expect(RecordSeal.open(changed, as: Claim.self, kind: "k", name: "n", keys: old).authenticity == .forged)
        // The MAC is over the stored bytes: even a change that decodes to the same values is one.
        let spaced = Array(text.replacingOccurrences(of: "\"count\":3", with: "\"count\" :  3").utf8)
        #expect(RecordSeal.open(spaced, as: Claim.self, kind: "k", name: "n", keys: old).authenticity == .forged)
        // A member added after the seal was made (by anyone) breaks it; a reader that does not
        // know a member drctl sealed still verifies it (it judges the bytes, not its re-encoding).
        let added = Array(text.replacingOccurrences(of: "\"count\":3", with: "\"count\":3,\"x\":1").utf8)
        #expect(RecordSeal.open(added, as: Claim.self, kind: "k", name: "n", keys: old).authenticity == .forged)
        struct Older: Codable { var job: String }
        #expect(RecordSeal.open(bytes, as: Older.self, kind: "k", name: "n", keys: old).authenticity.isAuthentic)
    }

    /// The seal admits no variant either (found by drctl-fuzz record): a field added to it, its
    /// MAC in capitals, a space inside it; each is a changed byte, and none verifies.
    @Test func theSealItselfHasOneSpelling() throws {
        let bytes = try RecordSeal.seal(claim, kind: "k", name: "n", keys: old)
        let text = String(decoding: bytes, as: UTF8.self)
        let hmac = try #require(text.firstMatch(of: /"hmac":"([0-9a-f]{64})"/).map { String($0.1) })
        for variant in [text.replacingOccurrences(of: "\"key\":\"old\"", with: "\"key\":\"old\",\"extra\":\"\(hmac)\""),
                        text.replacingOccurrences(of: hmac, with: hmac.uppercased()),
                        text.replacingOccurrences(of: "{\"hmac\":", with: "{ \"hmac\":")] {
            #expect(variant != text)
            #expect(!RecordSeal.open(Array(variant.utf8), as: Claim.self, kind: "k", name: "n", keys: old).authenticity.isAuthentic, "\(variant)")
        }
    }

    @Test func unsignedAndUnknownKeysAreNotAuthentic() throws {
        let plain = Array(try JSONCoding.encoder(pretty: false).encode(claim))
        #expect(RecordSeal.open(plain, as: Claim.self, kind: "k", name: "n", keys: old).authenticity == .unsigned)
        let other = try RecordSeal.seal(claim, kind: "k", name: "n", keys: RecordKeyring(keys: [Self.key("theirs", 9)]))
        #expect(RecordSeal.open(other, as: Claim.self, kind: "k", name: "n", keys: old).authenticity == .unknownKey("theirs"))
        // The same id with another secret (a guess at the id): forged.
        let guessed = try RecordSeal.seal(claim, kind: "k", name: "n", keys: RecordKeyring(keys: [Self.key("old", 9)]))
        #expect(RecordSeal.open(guessed, as: Claim.self, kind: "k", name: "n", keys: old).authenticity == .forged)
        #expect(RecordSeal.open(Array("not json".utf8), as: Claim.self, kind: "k", name: "n", keys: old).value == nil)
    }

    @Test func rotationOldKeysVerifyTheNewestSigns() throws {
        let before = try RecordSeal.seal(claim, kind: "k", name: "n", keys: old)
        #expect(RecordSeal.open(before, as: Claim.self, kind: "k", name: "n", keys: rotated).authenticity == .authentic(key: "old"))
        let after = try RecordSeal.seal(claim, kind: "k", name: "n", keys: rotated)
        #expect(RecordSeal.open(after, as: Claim.self, kind: "k", name: "n", keys: rotated).authenticity == .authentic(key: "new"))
        // A reader that has not got the new key yet does not take it for drctl's.
        #expect(RecordSeal.open(after, as: Claim.self, kind: "k", name: "n", keys: old).authenticity == .unknownKey("new"))
    }

    @Test func withoutAKeyNothingIsSealedAndNothingVerifies() throws {
        #expect(throws: RecordKeyError.self) { try RecordSeal.seal(claim, kind: "k", name: "n", keys: .none) }
        let bytes = try RecordSeal.seal(claim, kind: "k", name: "n", keys: old)
        let broken = RecordKeyring(keys: old.keys, origin: "f", problem: "unreadable")
        #expect(!RecordSeal.open(bytes, as: Claim.self, kind: "k", name: "n", keys: broken).authenticity.isAuthentic)
        #expect(broken.cannotSign == "unreadable")
        #expect(RecordKeyring.none.cannotSign != nil)
    }

    @Test func keyFilesParseAndNeverQuoteTheSecret() throws {
        let (id, line) = RecordKeyring.newKeyLine(now: Date(timeIntervalSince1970: 1_800_000_000))
        #expect(id.hasPrefix("k20270115-"))
        let ring = try RecordKeyring.parse("# drctl record keys\n\(line)\n\nrecord-key-typo x y\n".replacingOccurrences(of: "record-key-typo x y\n", with: ""), origin: "keys")
        #expect(ring.signing?.id == id)
        let secret = String(line.split(separator: " ")[2])
        do {
            _ = try RecordKeyring.parse("drctl-record-key a \(secret.dropLast(2))\n", origin: "keys")
            Issue.record("a short key was accepted")
        } catch {
            #expect("\(error)".contains("keys:1"))
            #expect(!"\(error)".contains(secret.prefix(16)))
        }
        #expect(throws: RecordKeyError.self) { try RecordKeyring.parse("drctl-record-key a \(secret)\ndrctl-record-key a \(secret)\n", origin: "k") }
        #expect(throws: RecordKeyError.self) { try RecordKeyring.parse("\n# only comments\n", origin: "k") }
        let env = RecordKeyring.fromEnvironment(["DRCTL_RECORD_KEY_FILE": "/nonexistent/keys"])
        #expect(env.cannotSign?.contains("/nonexistent/keys") == true)
    }

    @Test func anEmptyObjectSealsToo() throws {
        struct Empty: Codable, Equatable { var note: String? }
        let bytes = try RecordSeal.seal(Empty(), kind: "k", name: "n", keys: old)
        #expect(RecordSeal.open(bytes, as: Empty.self, kind: "k", name: "n", keys: old).authenticity.isAuthentic)
    }

    /// The fuzz corpus's sealed record was made by another implementation (Python's hmac) from
    /// the documented format: drctl verifies it, so the format is what the comment says.
    @Test func aRecordSealedByTheDocumentedFormatVerifies() throws {
        struct Probe: Codable { var job: String?; var ratio: Double? }
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz/corpus/record")
        let keys = RecordKeyring(keys: [RecordKey(id: "fuzz", secret: [UInt8](repeating: 9, count: 32))])
        for (file, want) in [("sealed.json", true), ("sealed-empty.json", true), ("unsigned.json", false), ("nested-brace.json", false)] {
            let bytes = Array(try Data(contentsOf: dir.appendingPathComponent(file)))
            let (value, how) = RecordSeal.open(bytes, as: Probe.self, kind: "fuzz", name: "fuzz/1.json", keys: keys)
            #expect(how.isAuthentic == want, "\(file): \(how)")
            if file == "sealed.json" { #expect(value?.job == "drill-app" && value?.ratio == 0.25) }
        }
    }
}

import Foundation
import Testing
import TestSupport
@testable import Age

/// drctl's age against the format's rules and against Debian's `age`, both ways: an operator can
/// decrypt drctl's objects without drctl, and drctl reads what `age` wrote.
struct AgeTests {
    let identity: Age.Identity
    let secret: String
    init() { (identity, secret) = Age.Identity.generate() }

    @Test func keysRoundTripThroughBech32() throws {
        #expect(secret.hasPrefix("AGE-SECRET-KEY-1") && secret == secret.uppercased())
        let r = try Age.Recipient(identity.recipient.description)
        #expect(r == identity.recipient && r.description.hasPrefix("age1") && r.description.count == 62)
        #expect(!"\(identity)".contains(secret.dropFirst(16).prefix(10)), "an identity never prints its secret")
        // The specification's example recipient decodes; a flipped character fails the checksum.
        #expect(throws: Never.self) { try Age.Recipient("age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj") }
        #expect(throws: Age.Failure.self) { try Age.Recipient("age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwk") }
    }

    @Test(arguments: [0, 1, 65535, 65536, 65537, 3 * 65536, 200_001])
    func roundTripsAcrossChunkBoundaries(size: Int) throws {
        let plain = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let sealed = try Age.encrypt(plain, to: [identity.recipient])
        #expect(try Age.decrypt(sealed, identities: [identity]) == plain)
        // Streamed in odd pieces, the same.
        let d = Age.Decryptor(identities: [identity])
        var out: [UInt8] = []
        var i = 0
        while i < sealed.count {
            let j = min(i + 7777, sealed.count)
            try sealed[i..<j].withUnsafeBytes { try d.feed($0) { out += $0 } }
            i = j
        }
        try d.finish { out += $0 }
        #expect(out == plain)
    }

    @Test func aChangedTruncatedOrForeignObjectFailsClearly() throws {
        let plain = [UInt8](repeating: 42, count: 150_000)
        let sealed = try Age.encrypt(plain, to: [identity.recipient])
        var flipped = sealed
        flipped[sealed.count - 100] ^= 1
        #expect(throws: Age.Failure.self) { try Age.decrypt(flipped, identities: [identity]) }
        // Cut at a chunk boundary: the last chunk left is not marked final.
        let headerAndTwo = sealed.count - (150_000 - 2 * 65536 + 16)
        #expect { try Age.decrypt(Array(sealed.prefix(headerAndTwo)), identities: [identity]) } throws: { "\($0)".contains("final chunk does not authenticate") }
        #expect(throws: Age.Failure.self) { try Age.decrypt(Array(sealed.prefix(sealed.count - 1)), identities: [identity]) }
        let (other, _) = Age.Identity.generate()
        #expect { try Age.decrypt(sealed, identities: [other]) } throws: { "\($0)".contains("is a recipient of this object") && "\($0)".contains(other.recipient.description) }
        // The header's MAC covers the stanzas: a changed stanza argument is refused.
        var header = sealed
        let i = header.firstIndex(of: UInt8(ascii: "X"))!   // "-> X25519 …"
        header[i + 8] = header[i + 8] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(throws: Age.Failure.self) { try Age.decrypt(header, identities: [identity]) }
        #expect(throws: Age.Failure.self) { try Age.decrypt(Array("not age".utf8), identities: [identity]) }
    }

    @Test func severalIdentitiesForRotationAndAPassphrase() throws {
        let (old, _) = Age.Identity.generate()
        let sealed = try Age.encrypt(Array("rotated".utf8), to: [old.recipient, identity.recipient])
        #expect(try Age.decrypt(sealed, identities: [identity]) == Array("rotated".utf8))
        let e = try Age.Encryptor(passphrase: "correct horse", logN: 10)
        let p = e.header + Array("secret".utf8).withUnsafeBytes { e.update($0) } + e.finish()
        #expect(try Age.decrypt(p, identities: [], passphrase: "correct horse") == Array("secret".utf8))
        #expect(throws: Age.Failure.self) { try Age.decrypt(p, identities: [], passphrase: "wrong") }
    }

    @Test func debiansAgeReadsDrctlsObjectsAndDrctlReadsAges() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/age"), "Debian's age is missing: run scripts/install-deps.sh")
        let dir = tempPath("age")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try (secret + "\n").write(toFile: dir + "/key.txt", atomically: true, encoding: .utf8)
        let plain = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        try Data(try Age.encrypt(plain, to: [identity.recipient])).write(to: URL(fileURLWithPath: dir + "/by-drctl.age"))
        let (st, out) = try run("/usr/bin/age", ["-d", "-i", dir + "/key.txt", "-o", dir + "/by-drctl", dir + "/by-drctl.age"])
        #expect(st == 0, "\(out)")
        #expect(FileManager.default.contents(atPath: dir + "/by-drctl").map(Array.init) == plain)

        try Data(plain).write(to: URL(fileURLWithPath: dir + "/plain"))
        let (est, eout) = try run("/usr/bin/age", ["-r", identity.recipient.description, "-o", dir + "/by-age.age", dir + "/plain"])
        try #require(est == 0, "\(eout)")
        #expect(try Age.decrypt(Array(FileManager.default.contents(atPath: dir + "/by-age.age")!), identities: [identity]) == plain)
        // A key made by age-keygen is read from its file.
        let (kst, _) = try run("/usr/bin/age-keygen", ["-o", dir + "/keygen.txt"])
        try #require(kst == 0)
        let ids = try Age.Identity.file(String(contentsOfFile: dir + "/keygen.txt", encoding: .utf8))
        #expect(ids.count == 1)
        let (e2, o2) = try run("/usr/bin/age", ["-r", ids[0].recipient.description, "-o", dir + "/k.age", dir + "/plain"])
        try #require(e2 == 0, "\(o2)")
        #expect(try Age.decrypt(Array(FileManager.default.contents(atPath: dir + "/k.age")!), identities: ids) == plain)
    }
}

import Age
import Catalog
import Foundation
import Layout
import Storage
import Testing
@testable import Replication

/// A Velero storage location encrypted with age (spec.encryption.type: age): every object is a
/// whole age file at its own key. Read through AgeObjects it scans like a plain one given the
/// identity; without it each backup is named as encrypted, never parsed as ciphertext.
struct AgeObjectsTests {
    static let backup = """
        {"apiVersion":"velero.io/v1","kind":"Backup","metadata":{"name":"n8n-daily-1","namespace":"velero","labels":{"velero.io/schedule-name":"n8n-daily"}},
         "spec":{"includedNamespaces":["n8n"]},"status":{"phase":"Completed","startTimestamp":"2026-11-30T01:00:00Z","completionTimestamp":"2026-11-30T01:02:00Z"}}
        """

    static func store(_ recipient: Age.Recipient) throws -> MemoryStorage {
        MemoryStorage([
            "velero/backups/n8n-daily-1/velero-backup.json": try Age.encrypt(Array(backup.utf8), to: [recipient]),
            "velero/backups/n8n-daily-1/n8n-daily-1.tar.gz": try Age.encrypt(Array(repeating: 9, count: 200_000), to: [recipient]),
            "velero/backups/plain-1/velero-backup.json": Array(backup.replacingOccurrences(of: "n8n-daily-1", with: "plain-1").utf8),
            "velero/backups/plain-1/plain-1.tar.gz": Array(repeating: 1, count: 10),
            "velero/tiny": Array("age".utf8),
        ])
    }

    @Test func anEncryptedLocationScansWithItsIdentityAndIsNamedWithout() throws {
        let (id, _) = Age.Identity.generate()
        let raw = try Self.store(id.recipient)
        let layout = VeleroLayout(root: "velero")
        let read = try VeleroScanner.scan(AgeObjects(raw, identities: [id]), layout: layout)
        #expect(read.map(\.phase) == ["Completed", "Completed"] && read.allSatisfy(\.restorePoint), "\(read)")
        #expect(try AgeObjects(raw, identities: [id]).read("velero/backups/n8n-daily-1/n8n-daily-1.tar.gz", limit: 1 << 20) == Array(repeating: 9, count: 200_000))
        #expect(try AgeObjects(raw, identities: []).read("velero/tiny") == Array("age".utf8), "an object shorter than the header passes through")

        let blind = try VeleroScanner.scan(AgeObjects(raw, identities: []), layout: layout)
        let sealed = try #require(blind.first { $0.name == "n8n-daily-1" })
        #expect(sealed.phase == "Unreadable" && sealed.problem?.contains("is encrypted with age (a Velero storage location with spec.encryption.type: age): give its identity with --identity") == true,
                "\(sealed)")
        #expect(blind.first { $0.name == "plain-1" }?.phase == "Completed", "plain objects beside it read as before")
        let (other, _) = Age.Identity.generate()
        let wrong = try VeleroScanner.scan(AgeObjects(raw, identities: [other]), layout: layout)
        #expect(wrong.first { $0.name == "n8n-daily-1" }?.phase == "Unreadable")

        // download(to:) decrypts in place; a plain object is left as it came.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ageobjects-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let got = try AgeObjects(raw, identities: [id]).download("velero/backups/n8n-daily-1/n8n-daily-1.tar.gz", to: dir + "/a")
        #expect(got.size == 200_000 && FileManager.default.contents(atPath: dir + "/a") == Data(repeating: 9, count: 200_000))
        _ = try AgeObjects(raw, identities: [id]).download("velero/backups/plain-1/plain-1.tar.gz", to: dir + "/b")
        #expect(FileManager.default.contents(atPath: dir + "/b") == Data(repeating: 1, count: 10))
    }
}

import Foundation
import Testing
@testable import Catalog
import Layout
import Storage
import Support
import Paths

/// Catalog sync against the in-memory store: the catalog then answers the scanners as the
/// store does, an interrupted sync leaves the last good copy, and a second run completes it.
struct CatalogSyncTests {
    typealias R = RetentionSafetyTests

    static func catalog() throws -> (CatalogStore, String) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-sync-\(UUID().uuidString)/catalog.sqlite").path
        return (try CatalogStore(path: path), path)
    }

    static func store() -> MemoryStorage {
        MemoryStorage(R.bucket([(R.A, 0x02, 30, true), (R.C, 0x21, 2, true)], missingWAL: [0x10]).objects)
    }

    static func item(_ s: any StorageReader) -> CatalogSync.Item { CatalogSync.Item(storage: s, prefix: "cnpg", kind: .barman) }

    @Test func theCatalogAnswersTheScannersAsTheStoreDoes() throws {
        let s = Self.store()
        let (db, path) = try Self.catalog()
        defer { try? FileManager.default.removeItem(atPath: Paths.parent(path)) }
        let results = try CatalogSync.withLockSync(path) { try CatalogSync.sync([Self.item(s)], into: db, full: false) { _ in } }
        #expect(results.first?.prefix == "cnpg/" && results.first?.objects == s.keys.count)
        let fromStore = try BarmanScanner.scan(s, layout: R.layout, server: "db")
        let fromCatalog = try BarmanScanner.scan(db.reader(store: s.identity), layout: R.layout, server: "db")
        #expect(fromCatalog.backups == fromStore.backups && fromCatalog.walSegments == fromStore.walSegments,
                "\(fromCatalog.backups)\n---\n\(fromStore.backups)")
        #expect(fromCatalog.backups.map(\.walGaps) == fromStore.backups.map(\.walGaps) && !fromStore.backups.allSatisfy(\.walGaps.isEmpty))
    }

    @Test func onlyNewOrChangedMetadataIsFetchedAgain() throws {
        let s = Self.store()
        let (db, path) = try Self.catalog()
        defer { try? FileManager.default.removeItem(atPath: Paths.parent(path)) }
        _ = try CatalogSync.sync([Self.item(s)], into: db, full: false) { _ in }
        let gets = s.log.filter { $0.hasPrefix("get ") }.count
        #expect(gets == 2, "the two backup.info files: \(s.log.filter { $0.hasPrefix("get ") })")
        let again = try CatalogSync.sync([Self.item(s)], into: db, full: false) { _ in }
        #expect(again.first?.fetched == 0 && s.log.filter { $0.hasPrefix("get ") }.count == gets)
        // A new base backup: its backup.info alone is fetched.
        try s.put(R.layout.backupInfoKey(server: "db", backupID: R.B), bytes: R.info(begin: 0x11, end: 0x12, endedDaysAgo: 10))
        let third = try CatalogSync.sync([Self.item(s)], into: db, full: false) { _ in }
        #expect(third.first?.fetched == 1)
    }

    @Test func anInterruptedSyncKeepsTheLastGoodCopyAndTheNextCompletesIt() throws {
        let s = Self.store()
        let (db, path) = try Self.catalog()
        defer { try? FileManager.default.removeItem(atPath: Paths.parent(path)) }
        _ = try CatalogSync.sync([Self.item(s)], into: db, full: true) { _ in }
        let before = try BarmanScanner.scan(db.reader(store: s.identity), layout: R.layout, server: "db")

        try s.put(R.layout.backupInfoKey(server: "db", backupID: R.B), bytes: R.info(begin: 0x11, end: 0x12, endedDaysAgo: 10))
        s.fault = { op, key in op == .get && key.hasSuffix("\(R.B)/backup.info") ? StorageError.io("503 Slow Down") : nil }
        #expect(throws: StorageError.self) { try CatalogSync.sync([Self.item(s)], into: db, full: true) { _ in } }
        // Readers see a consistent catalog: the new backup is listed but its metadata is not
        // there yet, so the scan is the old one plus nothing it cannot read.
        let during = try BarmanScanner.scan(db.reader(store: s.identity), layout: R.layout, server: "db")
        #expect(during.backups.filter { $0.backupID != R.B } == before.backups)

        s.fault = nil
        _ = try CatalogSync.sync([Self.item(s)], into: db, full: true) { _ in }
        let after = try BarmanScanner.scan(db.reader(store: s.identity), layout: R.layout, server: "db")
        #expect(after.backups == (try BarmanScanner.scan(s, layout: R.layout, server: "db")).backups)
        #expect(after.backups.map(\.backupID).contains(R.B))
    }

    @Test func deletionsInTheStoreLeaveTheCatalogOnAFullSync() throws {
        let s = Self.store()
        let (db, path) = try Self.catalog()
        defer { try? FileManager.default.removeItem(atPath: Paths.parent(path)) }
        _ = try CatalogSync.sync([Self.item(s)], into: db, full: true) { _ in }
        try s.delete([R.layout.backupInfoKey(server: "db", backupID: R.A)])
        let r = try CatalogSync.sync([Self.item(s)], into: db, full: true) { _ in }
        #expect(r.first?.removed ?? 0 >= 1)
        let scan = try BarmanScanner.scan(db.reader(store: s.identity), layout: R.layout, server: "db")
        #expect(!scan.backups.contains { $0.backupID == R.A && $0.status == "DONE" })
    }

    @Test func oneSyncAtATimePerCatalog() throws {
        let (_, path) = try Self.catalog()
        defer { try? FileManager.default.removeItem(atPath: Paths.parent(path)) }
        var notices: [String] = []
        var inner: Bool?
        try CatalogSync.withLock(path, noWait: false) {
            // Another process (flock is per open file description: a second open conflicts).
            inner = try CatalogSync.withLock(path, noWait: true, notice: { notices.append($0) }) {}
        }
        #expect(inner == false && notices.first?.contains("another catalog sync") == true)
    }
}

extension CatalogSync {
    /// Sync under the lock, as the commands do.
    static func withLockSync<T>(_ path: String, _ body: () throws -> T) throws -> T {
        var out: T?
        try withLock(path, noWait: false) { out = try body() }
        return out!
    }
}

import Foundation
import Support
import Testing
@testable import Catalog
import Layout
import Storage

/// A bucket in memory: enough for BarmanScanner to judge what is restorable from the objects.
struct MemoryReader: StorageReader {
    var objects: [String: [UInt8]]
    var location: String { "memory:" }
    func list(prefix: String, delimiter: String?, startAfter: String?, _ page: ([StoredObject], [String]) throws -> Void) throws {
        try page(objects.keys.filter { $0.hasPrefix(prefix) }.sorted().map {
            StoredObject(key: $0, size: Int64(objects[$0]!.count), etag: "", lastModified: Date(timeIntervalSince1970: 0))
        }, [])
    }
    func head(_ key: String) throws -> StoredObject? { nil }
    func get(_ key: String, range: ClosedRange<Int64>?, _ chunk: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let o = objects[key] else { throw StorageError.notFound(key) }
        try o.withUnsafeBytes { try chunk($0) }
    }
    func bucketLock() throws -> BucketLock { BucketLock(enabled: false) }
}

/// Retention never deletes the last way back: the example, A (30 days, restorable),
/// B (10 days, DONE, its data gone), C (2 days, DONE, a WAL gap), window 7 days.
struct RetentionSafetyTests {
    static let now = Date(timeIntervalSince1970: 1_795_757_517)
    static let layout = BarmanLayout(root: "cnpg")
    // Backup ids as barman names them (their begin time), oldest first.
    static let Z = "20261018T050000", A = "20261028T050000", B = "20261117T050000", C = "20261125T050000"

    static func seg(_ n: UInt32) -> WALSegment { WALSegment(timeline: 1, log: 0, segment: n) }

    static func info(begin: UInt32, end: UInt32, endedDaysAgo days: Double) -> [UInt8] {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss.SSSSSS"
        let endTime = now.addingTimeInterval(-days * 86400)
        return Array("""
            backup_name=None
            begin_time=\(f.string(from: endTime.addingTimeInterval(-60)))+00:00
            begin_wal=\(seg(begin).name)
            end_time=\(f.string(from: endTime))+00:00
            end_wal=\(seg(end).name)
            status=DONE
            timeline=1
            version=150018
            xlog_segment_size=16777216

            """.utf8)
    }

    /// Backups by (id, begin segment, days ago, has data); WAL 1...0x30 but `missingWAL`.
    static func bucket(_ backups: [(String, UInt32, Double, Bool)], missingWAL: Set<UInt32>) -> MemoryReader {
        var o: [String: [UInt8]] = [:]
        for n in UInt32(1)...0x30 where !missingWAL.contains(n) {
            o[layout.key(for: .walSegment(server: "db", segment: seg(n), compression: .gzip))] = [1]
        }
        for (id, begin, days, data) in backups {
            o[layout.backupInfoKey(server: "db", backupID: id)] = info(begin: begin, end: begin + 1, endedDaysAgo: days)
            if data { o[layout.key(for: .backupArchive(server: "db", backupID: id, name: "data", compression: .gzip))] = [2] }
        }
        return MemoryReader(objects: o)
    }

    static func plan(_ reader: MemoryReader) throws -> PrunePlan {
        let scan = try BarmanScanner.scan(reader, layout: layout, server: "db")
        let objects = reader.objects.map { ObjectRef(key: $0.key, size: Int64($0.value.count)) }
        return BarmanRetention.plan(scan: scan, objects: objects, layout: layout, window: RecoveryWindow(cnpg: "7d")!, minimumRedundancy: 0, now: now)
    }

    @Test func theNewestRestorableBackupSurvivesTheWindow() throws {
        // C's own WAL (0x21...0x22) has a hole at 0x22.
        let reader = Self.bucket([(Self.A, 0x02, 30, true), (Self.B, 0x10, 10, false), (Self.C, 0x21, 2, true)], missingWAL: [0x22])
        let scan = try BarmanScanner.scan(reader, layout: Self.layout, server: "db")
        #expect(scan.backups.map(\.restorable) == [true, false, false], "A restorable, B without data, C with a WAL gap")
        let p = try Self.plan(reader)
        #expect(p.report[Self.A] == "KEPT_RESTORABLE", "\(p.report)")
        #expect(p.backupsToDelete.isEmpty && p.keysToDelete.isEmpty, "\(p.keysToDelete)")
        #expect(p.kept?.first?.hasPrefix(Self.A + ": the newest restorable backup") == true, "\(p.kept ?? [])")
    }

    @Test func olderBackupsStillGoAndTheKeptOneKeepsItsWAL() throws {
        // Z is older still: it goes, with the WAL before A's begin; A and everything from 0x02 stay.
        let reader = Self.bucket([(Self.Z, 0x01, 40, true), (Self.A, 0x02, 30, true), (Self.B, 0x10, 10, false), (Self.C, 0x21, 2, true)], missingWAL: [0x22])
        let p = try Self.plan(reader)
        #expect(p.report[Self.A] == "KEPT_RESTORABLE" && p.report[Self.Z] == "OBSOLETE")
        #expect(p.backupsToDelete == [Self.Z])
        let wal = p.keysToDelete.filter { $0.contains("/wals/") }
        #expect(wal == [Self.layout.key(for: .walSegment(server: "db", segment: Self.seg(1), compression: .gzip))], "\(wal)")
    }

    @Test func nothingIsDeletedWhenNothingIsRestorable() throws {
        let reader = Self.bucket([(Self.A, 0x02, 30, false), (Self.B, 0x10, 10, false), (Self.C, 0x21, 2, true)], missingWAL: [0x22])
        let p = try Self.plan(reader)
        #expect(p.keysToDelete.isEmpty && p.backupsToDelete.isEmpty)
        #expect(p.report[Self.A] == "KEPT_NONE_RESTORABLE")
        #expect(p.kept?.first?.contains("no backup of db is restorable") == true)
    }

    @Test func whenTheNewestIsRestorableBarmansRulesAreUnchanged() throws {
        let reader = Self.bucket([(Self.A, 0x02, 30, true), (Self.B, 0x10, 10, true), (Self.C, 0x21, 2, true)], missingWAL: [])
        let p = try Self.plan(reader)
        #expect(p.backupsToDelete == [Self.A] && p.kept == nil)
    }

    /// An unfinished plan deletes only what today's plan also deletes, under the server's own
    /// prefix, of barman's kinds; one made for elsewhere is refused.
    @Test func anUnfinishedPlanIsIntersectedWithTodaysPlan() throws {
        let reader = Self.bucket([(Self.Z, 0x01, 40, true), (Self.A, 0x02, 30, true), (Self.B, 0x10, 10, true), (Self.C, 0x21, 2, true)], missingWAL: [])
        let current = try Self.plan(reader)
        #expect(current.backupsToDelete == [Self.Z, Self.A])
        var recorded = current
        let velero = "velero/backups/x/velero-backup.json", other = "cnpg/other/base/\(Self.A)/backup.info"
        let keep = Self.layout.backupInfoKey(server: "db", backupID: Self.C)
        let history = "cnpg/db/wals/00000002.history"
        recorded.keysToDelete = current.keysToDelete + [velero, other, keep, history, "cnpg/db/../other/x"]
        let r = try PruneReplay.check(record: "r", recorded: recorded, current: current, layout: Self.layout, server: "db", bucket: "b")
        #expect(r.stillSelected == current.keysToDelete)
        #expect(r.noLongerSelected == [keep])
        #expect(Set(r.refused) == [velero, other, history, "cnpg/db/../other/x"])

        recorded.bucket = "elsewhere"
        #expect(throws: PruneRecordMismatch.self) { try PruneReplay.check(record: "r", recorded: recorded, current: current, layout: Self.layout, server: "db", bucket: "b") }
        recorded.bucket = "b"
        recorded.root = "backups"
        #expect(throws: PruneRecordMismatch.self) { try PruneReplay.check(record: "r", recorded: recorded, current: current, layout: Self.layout, server: "db", bucket: "b") }
        recorded.root = nil
        recorded.server = "other"
        #expect(throws: PruneRecordMismatch.self) { try PruneReplay.check(record: "r", recorded: recorded, current: current, layout: Self.layout, server: "db", bucket: "b") }
    }

    /// Each backup's backup.info is deleted after its data and WAL, so an interrupted prune
    /// never leaves objects the next plan cannot see.
    @Test func backupInfoGoesLast() throws {
        let reader = Self.bucket([(Self.Z, 0x01, 40, true), (Self.A, 0x02, 30, true), (Self.B, 0x10, 10, true), (Self.C, 0x21, 2, true)], missingWAL: [])
        let keys = try Self.plan(reader).keysToDelete
        for id in [Self.Z, Self.A] {
            let info = keys.firstIndex(of: Self.layout.backupInfoKey(server: "db", backupID: id))!
            let data = keys.firstIndex { $0.contains("/\(id)/data") }!
            #expect(data < info)
        }
        let zInfo = keys.firstIndex(of: Self.layout.backupInfoKey(server: "db", backupID: Self.Z))!
        #expect(keys.firstIndex { $0.hasSuffix("000000010000000000000001.gz") }! < zInfo, "Z's WAL before Z's backup.info")
    }

    /// backup.info objects written to steer the plan: a "newest" backup that ended long ago (to
    /// make every real one look old), and a WAITING_FOR_WALS one claiming a begin far ahead (to
    /// take the WAL the kept backups need).
    @Test func forgedBackupInfoDoesNotSteerTheDeletion() throws {
        var reader = Self.bucket([(Self.A, 0x02, 30, true), (Self.B, 0x10, 10, true), (Self.C, 0x21, 2, true)], missingWAL: [])
        let honest = try Self.plan(reader)
        #expect(honest.backupsToDelete == [Self.A])
        // Its id says yesterday, its end says 40 days ago.
        let forged = "20261126T050000"
        let old = Self.info(begin: 0x22, end: 0x23, endedDaysAgo: 40)
        reader.objects[Self.layout.backupInfoKey(server: "db", backupID: forged)] = old
        reader.objects[Self.layout.key(for: .backupArchive(server: "db", backupID: forged, name: "data", compression: .gzip))] = [2]
        var p = try Self.plan(reader)
        #expect(p.report[forged]?.hasPrefix("SUSPECT") == true, "\(p.report)")
        #expect(Set(p.keysToDelete) == Set(honest.keysToDelete), "the forged backup changed the plan: \(p.keysToDelete)")

        // Right after A, a WAITING_FOR_WALS backup whose begin_wal is far beyond every real one.
        reader.objects.removeValue(forKey: Self.layout.backupInfoKey(server: "db", backupID: forged))
        let after = "20261029T050000"
        var text = String(decoding: Self.info(begin: 0x02, end: 0x03, endedDaysAgo: 29), as: UTF8.self)
        text = text.replacingOccurrences(of: "status=DONE", with: "status=WAITING_FOR_WALS")
            .replacingOccurrences(of: "begin_wal=\(Self.seg(2).name)", with: "begin_wal=00000001000000FF000000FF")
        reader.objects[Self.layout.backupInfoKey(server: "db", backupID: after)] = Array(text.utf8)
        p = try Self.plan(reader)
        let deletedWAL = p.keysToDelete.filter { $0.contains("/wals/") }
        #expect(deletedWAL.allSatisfy { $0 < Self.layout.key(for: .walSegment(server: "db", segment: Self.seg(0x10), compression: .gzip)) },
                "WAL B and C need was selected: \(deletedWAL.suffix(3))")
    }
}


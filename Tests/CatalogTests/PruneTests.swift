import Foundation
import Testing
@testable import Catalog
import Layout
import Records
import Storage
import Support

/// The prune engine against the in-memory store: what it deletes, what it records first, and
/// what an interruption, a lock or a forged journal does. No object store needed.
struct PruneTests {
    typealias R = RetentionSafetyTests
    static let journal = DrctlLayout(root: "drctl")

    /// Z and A are past the 7-day window, C is inside it; all three restorable.
    static func store() -> MemoryStorage {
        MemoryStorage(R.bucket([(R.Z, 0x02, 40, true), (R.A, 0x08, 30, true), (R.C, 0x21, 2, true)], missingWAL: []).objects)
    }

    static let ring = RecordKeyring(keys: [RecordKey(id: "test", secret: [UInt8](repeating: 7, count: 32))])

    static func journal(_ s: MemoryStorage) -> PruneJournal {
        var j = PruneJournal(storage: s, layout: journal, server: "db")
        j.keys = ring
        return j
    }

    /// Barman's mechanics without a drill's proof (proof: ProofTests).
    static func prune(_ s: MemoryStorage) -> BarmanPrune {
        var p = BarmanPrune(storage: s, layout: R.layout, server: "db", journal: journal(s), window: RecoveryWindow(cnpg: "7d")!, minimumRedundancy: 0)
        p.keys = ring
        p.trustUnproven = true
        return p
    }

    static func journalKeys(_ s: MemoryStorage) -> [String] { s.keys.filter { $0.hasPrefix("drctl/prune/db/") } }

    @Test func deletesWhatThePlanSelectsAndRecordsItFirst() throws {
        let s = Self.store()
        let p = Self.prune(s)
        let prepared = try p.prepare(now: R.now)
        #expect(prepared.plan.backupsToDelete == [R.Z], "\(prepared.plan.report)")
        #expect(!prepared.plan.keysToDelete.isEmpty && prepared.interrupted.isEmpty)
        #expect(Self.journalKeys(s).isEmpty, "a dry run writes nothing")

        let applied = try p.apply(prepared)
        #expect(applied.outcome?.deleted == prepared.plan.keysToDelete.count && applied.outcome?.failed.isEmpty == true)
        for k in prepared.plan.keysToDelete { #expect(s.contents(k) == nil, "\(k)") }
        #expect(s.contents(R.layout.backupInfoKey(server: "db", backupID: R.A)) != nil)
        #expect(s.contents(R.layout.backupInfoKey(server: "db", backupID: R.C)) != nil)
        // The plan was stored before the first delete, the outcome after the last.
        let log = s.log
        let planPut = try #require(log.firstIndex { $0.hasPrefix("put drctl/prune/db/") && !$0.hasSuffix(".done.json") })
        let firstDelete = try #require(log.firstIndex { $0.hasPrefix("delete ") })
        let donePut = try #require(log.firstIndex { $0.hasSuffix(".done.json") })
        #expect(planPut < firstDelete && log.lastIndex { $0.hasPrefix("delete ") }! < donePut)
        #expect(try Self.journal(s).unfinished().records.isEmpty)
    }

    @Test func anInterruptedPruneIsFinishedByTheNextRunAndOnlyAsFarAsItAgrees() throws {
        let s = Self.store()
        let first = try Self.prune(s).prepare(now: R.now)
        let victim = first.plan.keysToDelete[first.plan.keysToDelete.count / 2]
        // The store dies half way through the deletion.
        s.fault = { op, key in op == .delete && key == victim ? StorageError.io("connection reset") : nil }
        #expect(throws: StorageError.self) { try Self.prune(s).apply(first) }
        s.fault = nil
        #expect(s.contents(victim) != nil)
        let open = try Self.journal(s).unfinished().records
        #expect(open.count == 1, "the plan stays recorded without an outcome")

        let second = try Self.prune(s).prepare(now: R.now)
        #expect(second.interrupted.count == 1 && second.interrupted[0].stillSelected.contains(victim) && second.interrupted[0].refused.isEmpty)
        _ = try Self.prune(s).apply(second)
        #expect(s.contents(victim) == nil)
        #expect(try Self.journal(s).unfinished().records.isEmpty, "both records closed")
    }

    @Test func aForgedJournalNeverWidensTheDeletion() throws {
        let s = Self.store()
        let first = try Self.prune(s).prepare(now: R.now)
        var forged = first.plan
        let newest = R.layout.backupInfoKey(server: "db", backupID: R.C)
        forged.keysToDelete += [newest, "velero/backups/x/velero-backup.json", "cnpg/other/base/\(R.C)/backup.info"]
        try s.put("velero/backups/x/velero-backup.json", bytes: [1])
        try Self.journal(s).record(forged, stamp: "2026-01-01T00:00:00.000000Z-forged")

        let prepared = try Self.prune(s).prepare(now: R.now)
        let i = try #require(prepared.interrupted.first)
        #expect(i.noLongerSelected.contains(newest) && i.refused.contains("velero/backups/x/velero-backup.json"), "\(i)")
        _ = try Self.prune(s).apply(prepared)
        #expect(s.contents(newest) != nil && s.contents("velero/backups/x/velero-backup.json") != nil)
    }

    @Test func aJournalDrctlDidNotSealIsNeverReplayed() throws {
        let s = Self.store()
        try s.put("drctl/prune/db/2026-01-01T00:00:00Z-bad.json", bytes: Array(#"{"server":"db","keysToDelete":["x"],"pointOfRecoverability":"not a time"}"#.utf8))
        // Well-formed but unsigned: it names the newest backup for deletion.
        var plan = try Self.prune(s).prepare(now: R.now).plan
        let newest = R.layout.backupInfoKey(server: "db", backupID: R.C)
        plan.keysToDelete = [newest]
        try s.put("drctl/prune/db/2026-01-02T00:00:00Z-forged.json", bytes: Array(try JSONCoding.encoder().encode(plan)))
        let prepared = try Self.prune(s).prepare(now: R.now)
        #expect(prepared.interrupted.isEmpty)
        #expect(prepared.plan.unauthenticated == ["drctl/prune/db/2026-01-01T00:00:00Z-bad.json", "drctl/prune/db/2026-01-02T00:00:00Z-forged.json"])
        _ = try Self.prune(s).apply(prepared)
        #expect(s.contents(newest) != nil)
    }

    @Test func aForgedOutcomeClosesNothing() throws {
        let s = Self.store()
        let first = try Self.prune(s).prepare(now: R.now)
        let victim = first.plan.keysToDelete[0]
        s.fault = { op, key in op == .delete && key == victim ? StorageError.io("connection reset") : nil }
        #expect(throws: StorageError.self) { try Self.prune(s).apply(first) }
        s.fault = nil
        let stamp = try #require(try Self.journal(s).unfinished().records.first?.stamp)
        // Someone writes the outcome to hide the interrupted prune.
        try s.put("drctl/prune/db/\(stamp).done.json", bytes: Array(try JSONCoding.encoder().encode(PruneOutcome(deleted: 99))))
        let (open, forged) = try Self.journal(s).unfinished()
        #expect(open.map(\.stamp) == [stamp] && forged == ["drctl/prune/db/\(stamp).done.json"])
    }

    @Test func withoutARecordKeyNothingIsDeleted() throws {
        let s = Self.store()
        var p = Self.prune(s)
        p.keys = .none
        let prepared = try p.prepare(now: R.now)
        #expect(prepared.plan.keysToDelete.isEmpty, "\(prepared.plan.report)")
        #expect(prepared.plan.kept?.contains { $0.contains("no record key") } == true, "\(prepared.plan.kept ?? [])")
        #expect(throws: LocalError.self) { try p.apply(prepared) }
        #expect(!s.log.contains { $0.hasPrefix("delete ") || $0.hasPrefix("put ") })
    }

    @Test func lockedVersionsAreLeftAndCounted() throws {
        let s = Self.store()
        s.objectLock = BucketLock(enabled: true, mode: "COMPLIANCE", days: 30)
        let plain = try Self.prune(s).prepare(now: R.now)
        let held = try #require(plain.plan.keysToDelete.first)
        let until = Date().addingTimeInterval(365 * 86400)
        s.setLock(held, VersionLock(mode: "COMPLIANCE", retainUntil: until, legalHold: false))

        // Locked when planned: named, kept, and not deleted.
        let prepared = try Self.prune(s).prepare(now: R.now)
        #expect(prepared.plan.locked?.map(\.key) == [held], "\(prepared.plan.locked ?? [])")
        #expect(!prepared.plan.keysToDelete.contains(held))
        _ = try Self.prune(s).apply(prepared)
        #expect(s.contents(held) != nil)

        // Locked between the plan and the deletion: the store refuses, and that is counted as a
        // lock, not an error.
        let s2 = Self.store()
        s2.objectLock = BucketLock(enabled: true, mode: "COMPLIANCE", days: 30)
        let planned = try Self.prune(s2).prepare(now: R.now)
        let late = try #require(planned.plan.keysToDelete.last)
        s2.setLock(late, VersionLock(mode: nil, retainUntil: until, legalHold: true))
        let applied = try Self.prune(s2).apply(planned)
        #expect(applied.outcome?.failed.isEmpty == true && applied.outcome?.locked.map(\.key) == [late], "\(String(describing: applied.outcome))")
        #expect(s2.contents(late) != nil)
        for k in planned.plan.keysToDelete where k != late { #expect(s2.contents(k) == nil, "\(k)") }
    }

    @Test func anUnreadableLockConfigurationMeansEachObjectIsLookedAt() throws {
        let s = Self.store()
        s.objectLock = nil   // access denied
        let prepared = try Self.prune(s).prepare(now: R.now)
        _ = try Self.prune(s).apply(prepared)
        for k in prepared.plan.keysToDelete { #expect(s.log.contains("head \(k)"), "\(k)") }
    }
}

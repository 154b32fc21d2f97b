import Foundation
import Hashing
import Testing
@testable import Catalog
import Layout
import Records
import Storage
import Support

/// Retention decides on proof: what a drill restored, sealed with drctl's key, checked against
/// the objects as they are now. Each forgery here is written with the bucket's keys only.
struct ProofTests {
    typealias R = RetentionSafetyTests
    static let ring = PruneTests.ring
    static let drctl = DrctlLayout(root: "drctl")
    /// F: forged next to A (one second later), its backup.info naming A's WAL, its data junk.
    static let F = "20261028T050001"

    /// The example: A (30 days, restorable), B (10 days, DONE, its data gone), C (2 days,
    /// DONE, a WAL gap), and F forged beside A.
    static func store() -> MemoryStorage {
        var o = R.bucket([(R.A, 0x08, 30, true), (R.B, 0x10, 10, false), (R.C, 0x21, 2, true)], missingWAL: [0x22]).objects
        o[R.layout.backupInfoKey(server: "db", backupID: F)] = R.info(begin: 0x08, end: 0x09, endedDaysAgo: 29)
        o[R.layout.key(for: .backupArchive(server: "db", backupID: F, name: "data", compression: .gzip))] = [9]
        return MemoryStorage(o)
    }

    /// Evidence of a passing drill that restored `id` as `s` holds it now, sealed with `keys`.
    static func drill(_ id: String, from s: MemoryStorage, keys: RecordKeyring = ring, workload: String = "app", at: Date = R.now) throws {
        let objects = try [R.layout.backupInfoKey(server: "db", backupID: id),
                           R.layout.key(for: .backupArchive(server: "db", backupID: id, name: "data", compression: .gzip))].map { key in
            let head = try #require(try s.head(key))
            return RestoreProof.Object(key: R.layout.relative(key), size: head.size, etag: head.etag, sha256: Hash.sha256(s.contents(key)!).hex)
        }
        var db = DrillEvidence.Database(cluster: "db", server: "db", backupID: id, target: "latest", achieved: at, stop: "", timeline: 1,
                                        walSegments: 2, baseBytes: 1, walBytes: 1)
        db.proof = RestoreProof(backupID: id, objects: objects, walFirst: nil, walLast: nil)
        let e = DrillEvidence(id: "\(RFC3339.formatBasic(at))-\(id.suffix(4))", workload: workload, mode: "host", host: "h", startedAt: at, finishedAt: at,
                              target: "latest", targetTime: nil, result: .passed, error: nil, databases: [db], checks: [], rtoSeconds: 1,
                              rtoObjectiveSeconds: 3600, rpoSeconds: 0, rpoObjectiveSeconds: 3600, phases: [:], bytesFetched: 1)
        let (key, bytes) = try DrillEvidence.sealed(e, drctlPrefix: drctl.root, keys: keys)
        try s.put(key, bytes: bytes)
    }

    static func prune(_ s: MemoryStorage, tiers: RetentionTiers = .none, trust: Bool = false) -> BarmanPrune {
        var p = BarmanPrune(storage: s, layout: R.layout, server: "db", journal: PruneJournal(storage: s, layout: drctl, server: "db"),
                            window: RecoveryWindow(cnpg: "7d")!, minimumRedundancy: 0, tiers: tiers)
        p.keys = ring
        p.trustUnproven = trust
        return p
    }

    /// A backup.info forged half an hour after `real` (its WAL range, junk data): later the same
    /// day, so it would be that day's pick on backup.info alone. Returns its id.
    static func forgeLaterThatDay(_ real: (id: String, end: Date, begin: UInt32), in s: MemoryStorage) throws -> String {
        typealias T = TieredRetentionTests
        let forgedID = T.id(real.end.addingTimeInterval(1800))
        try s.put(T.layout.backupInfoKey(server: "db", backupID: forgedID), bytes: T.info(begin: real.begin, end: real.end.addingTimeInterval(1860)))
        try s.put(T.layout.key(for: .backupArchive(server: "db", backupID: forgedID, name: "data", compression: .gzip)), bytes: [3])
        return forgedID
    }

    static func aKeys(_ s: MemoryStorage) -> [String] { s.keys.filter { $0.contains("/base/\(R.A)/") } }

    @Test func aForgedBackupInfoNoLongerCostsTheOnlyGoodBackup() throws {
        // On barman's metadata alone (what drctl did before): F is "the newest restorable", A goes.
        let trusted = try Self.prune(Self.store(), trust: true).prepare(now: R.now).plan
        #expect(trusted.report[Self.F] == "KEPT_RESTORABLE" && trusted.backupsToDelete == [R.A], "\(trusted.report)")

        // A drill restored A: A and everything newer stays, with A's WAL.
        let s = Self.store()
        try Self.drill(R.A, from: s)
        let p = Self.prune(s)
        let prepared = try p.prepare(now: R.now)
        #expect(prepared.plan.proven == [R.A])
        #expect(prepared.plan.report[R.A] == "VALID", "the proven backup holds the window's start: \(prepared.plan.report)")
        #expect(prepared.plan.backupsToDelete.isEmpty && prepared.plan.keysToDelete.isEmpty, "\(prepared.plan.keysToDelete)")
        let before = s.keys
        _ = try p.apply(prepared)
        #expect(s.keys.filter { !$0.hasPrefix("drctl/") } == before.filter { !$0.hasPrefix("drctl/") })
    }

    @Test func noProofNoDeletionAndAChangedObjectIsNoProof() throws {
        let s = Self.store()
        let none = try Self.prune(s).prepare(now: R.now).plan
        #expect(none.proven == [] && none.keysToDelete.isEmpty && none.backupsToDelete.isEmpty, "\(none.report)")

        // A proven, then its data replaced by same-size junk: the proof no longer holds.
        try Self.drill(R.A, from: s)
        let data = R.layout.key(for: .backupArchive(server: "db", backupID: R.A, name: "data", compression: .gzip))
        try s.put(data, bytes: [7])
        let after = try Self.prune(s).prepare(now: R.now).plan
        #expect(after.proven == [] && after.keysToDelete.isEmpty)
        #expect(after.proofBroken?[R.A]?.contains("not the object the drill restored") == true, "\(after.proofBroken ?? [:])")
    }

    @Test func evidenceDrctlDidNotSealProvesNothing() throws {
        let s = Self.store()
        // Evidence for F, signed with someone else's key, and a copy of real evidence moved to another workload.
        try Self.drill(Self.F, from: s, keys: RecordKeyring(keys: [RecordKey(id: "test", secret: [UInt8](repeating: 1, count: 32))]))
        try Self.drill(R.A, from: s, workload: "real")
        let real = try #require(s.keys.first { $0.hasPrefix("drctl/evidence/real/") })
        try s.put(real.replacingOccurrences(of: "/real/", with: "/moved/"), bytes: s.contents(real)!)
        try s.delete([real])
        let plan = try Self.prune(s).prepare(now: R.now).plan
        #expect(plan.proven == [], "\(plan.proven ?? [])")
        #expect(plan.unauthenticated?.count == 2, "\(plan.unauthenticated ?? [])")
        #expect(plan.keysToDelete.isEmpty)
    }

    @Test func newerBackupsThanTheNewestProvenStayEvenOutsideTheWindow() throws {
        // Z (40 days) proven, A (30 days, the window's start by backup.info) not, C (2 days): Z
        // would go by the window alone; unproven, A cannot hold the window's start, so Z does.
        let s = MemoryStorage(R.bucket([(R.Z, 0x02, 40, true), (R.A, 0x08, 30, true), (R.C, 0x21, 2, true)], missingWAL: []).objects)
        try Self.drill(R.Z, from: s)
        let trusted = try Self.prune(s, trust: true).prepare(now: R.now).plan
        #expect(trusted.backupsToDelete == [R.Z], "\(trusted.report)")
        let plan = try Self.prune(s).prepare(now: R.now).plan
        #expect(plan.report[R.Z] == "VALID" && plan.report[R.A] == "VALID", "\(plan.report)")
        #expect(plan.keysToDelete.isEmpty)
        // Once A is proven too, Z goes (barman's rules, below the newest proven backup).
        try Self.drill(R.A, from: s, at: R.now.addingTimeInterval(60))
        let later = try Self.prune(s).prepare(now: R.now).plan
        #expect(later.backupsToDelete == [R.Z] && later.report[R.A] == "VALID", "\(later.report)")
    }

    /// Barman keeps the first backup that ended before the window's start. A forgery beside A
    /// (ending a second later) would be that backup, and A would go although the forgery cannot
    /// be restored: only a proven backup holds the window's start.
    @Test func aForgeryCannotStandInForTheWindowsStart() throws {
        var o = R.bucket([(R.A, 0x08, 30, true), (R.C, 0x21, 1, true)], missingWAL: []).objects
        o[R.layout.backupInfoKey(server: "db", backupID: Self.F)] = R.info(begin: 0x08, end: 0x09, endedDaysAgo: 29)
        o[R.layout.key(for: .backupArchive(server: "db", backupID: Self.F, name: "data", compression: .gzip))] = [9]
        let s = MemoryStorage(o)
        try Self.drill(R.A, from: s)
        try Self.drill(R.C, from: s, at: R.now.addingTimeInterval(60))
        let trusted = try Self.prune(s, trust: true).prepare(now: R.now).plan
        #expect(trusted.backupsToDelete == [R.A], "on backup.info alone: \(trusted.report)")
        let plan = try Self.prune(s).prepare(now: R.now).plan
        #expect(plan.report[R.A] == "VALID" && plan.backupsToDelete.isEmpty, "\(plan.report)")
    }

    @Test func aForgeryCannotTakeATierSlot() throws {
        typealias T = TieredRetentionTests
        let (s, backups) = T.archive(days: 21)
        // A real backup 15 days ago, proven by a drill then; a forgery ending later in the same UTC day.
        let real = backups[15]
        let forgedID = try Self.forgeLaterThatDay(real, in: s)
        let tiers = RetentionTiers(daily: 30)
        // Trusting backup.info, the forgery takes the day and the real backup is deleted.
        let trusted = try Self.prune(s, tiers: tiers, trust: true).prepare(now: R.now).plan
        #expect(trusted.report[forgedID] == "KEPT_DAILY" && trusted.backupsToDelete.contains(real.id), "\(trusted.report)")
        // Proven (the real one of that day, the window's start and the newest), the real backup
        // holds the slot; the forgery is kept, not trusted.
        try Self.drill(real.id, from: s, at: R.now.addingTimeInterval(-15 * 86400))
        try Self.drill(backups[8].id, from: s, at: R.now.addingTimeInterval(-8 * 86400))
        try Self.drill(backups[0].id, from: s)
        let plan = try Self.prune(s, tiers: tiers).prepare(now: R.now).plan
        #expect(plan.report[real.id] == "KEPT_DAILY", "\(plan.report)")
        // The day is held by a proven backup: the forgery is what goes, not the WAL they share.
        #expect(plan.report[forgedID] == "OBSOLETE" && plan.backupsToDelete.contains(forgedID), "\(plan.report)")
        #expect(!plan.backupsToDelete.contains(real.id))
        let realWAL = T.layout.key(for: .walSegment(server: "db", segment: T.seg(real.begin), compression: .gzip))
        #expect(!plan.keysToDelete.contains(realWAL))
    }

    /// No drill ever restored the day's real backup: a forgery ending later the same day is the
    /// day's pick by backup.info, yet the real one is not deleted (an unproven period keeps all
    /// its candidates), and forgeries in newer days cannot push it out of the tier.
    @Test func aForgeryCannotPushAnUnprovenRealBackupOutOfItsTier() throws {
        typealias T = TieredRetentionTests
        let (s, backups) = T.archive(days: 21)
        let real = backups[15]
        let forgedID = try Self.forgeLaterThatDay(real, in: s)
        try Self.drill(backups[8].id, from: s, at: R.now.addingTimeInterval(-8 * 86400))
        try Self.drill(backups[0].id, from: s)
        let plan = try Self.prune(s, tiers: RetentionTiers(daily: 30)).prepare(now: R.now).plan
        #expect(plan.report[real.id] == "KEPT_UNPROVEN_DAILY" && plan.report[forgedID] == "KEPT_UNPROVEN_DAILY", "\(plan.report)")
        #expect(!plan.backupsToDelete.contains(real.id))
        // Kept as points: the WAL between them and the window's start still goes.
        #expect(plan.keysToDelete.contains { $0.contains("/wals/") }, "\(plan.keysToDelete)")
    }

    @Test func theProofCheckIsPure() {
        let layout = BarmanLayout(root: "cnpg")
        let info = RestoreProof.Object(key: "db/base/X/backup.info", size: 3, etag: "e1", sha256: "aa")
        let data = RestoreProof.Object(key: "db/base/X/data.tar", size: 5, etag: "e2", sha256: "bb")
        var db = DrillEvidence.Database(cluster: "db", server: "db", backupID: "X", target: "latest", achieved: nil, stop: "", timeline: 1,
                                        walSegments: 0, baseBytes: 0, walBytes: 0)
        db.proof = RestoreProof(backupID: "X", objects: [info, data], walFirst: nil, walLast: nil)
        var e = DrillEvidence(id: "1", workload: "w", mode: "host", host: "h", startedAt: R.now, finishedAt: R.now, target: "latest", targetTime: nil,
                              result: .passed, error: nil, databases: [db], checks: [], rtoSeconds: 1, rtoObjectiveSeconds: 1, rpoSeconds: nil,
                              rpoObjectiveSeconds: 1, phases: [:], bytesFetched: 0)
        let now = ["cnpg/db/base/X/backup.info": StoredObject(key: "cnpg/db/base/X/backup.info", size: 3, etag: "e1"),
                   "cnpg/db/base/X/data.tar": StoredObject(key: "cnpg/db/base/X/data.tar", size: 5, etag: "other")]
        // Another ETag (a copy, a re-upload): settled by content.
        #expect(ProofCheck.judge(drills: [e], server: "db", layout: layout, objects: now) { $0.hasSuffix("data.tar") ? "bb" : nil }.proven == ["X"])
        #expect(ProofCheck.judge(drills: [e], server: "db", layout: layout, objects: now) { _ in "cc" }.proven.isEmpty)
        #expect(ProofCheck.judge(drills: [e], server: "db", layout: layout, objects: now.filter { !$0.key.hasSuffix("info") }) { _ in "bb" }.proven.isEmpty)
        e.result = .failed
        #expect(ProofCheck.judge(drills: [e], server: "db", layout: layout, objects: now) { _ in "bb" }.proven.isEmpty, "a failed drill proves nothing")
    }
}

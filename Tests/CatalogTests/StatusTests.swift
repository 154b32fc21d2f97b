import Foundation
import Support
import Testing
@testable import Catalog
import Storage
import Layout

struct StatusTests {
    static let now = Date(timeIntervalSince1970: 1_795_757_517)   // 2026-11-27 05:31:57 UTC
    static func ago(_ s: Double) -> Date { now.addingTimeInterval(-s) }

    static func backup(_ id: String, status: String = "DONE", end: Double? = 3600, restorable: Bool = true, gaps: [String] = [],
                       chainEndAgo: Double = 60, error: String? = nil, beginAgo: Double? = nil) -> BarmanBackup {
        // A backup begins before it ends (100 s before, unless given).
        BarmanBackup(server: "db", backupID: id, name: nil, status: status, error: error, beginTime: ago(beginAgo ?? (end ?? 3600) + 100), endTime: end.map(ago),
                     beginWAL: "000000010000000000000004", endWAL: "000000010000000000000004", beginLSN: nil, endLSN: nil, timeline: 1,
                     systemID: nil, pgVersion: 150018, size: 1, compression: "gz", archives: ["data"],
                     archiveFiles: [ArchiveFile(name: "data", key: "db/base/\(id)/data.tar.gz", size: 1, compression: "gz")], segmentSize: 16 << 20,
                     walChainEnd: "000000010000000000000009", walChainEndTime: ago(chainEndAgo), walGaps: gaps, restorable: restorable)
    }

    static func scan(_ backups: [BarmanBackup]) -> [String: BarmanServerScan] {
        ["db": BarmanServerScan(server: "db", backups: backups, walSegments: 6, partialSegments: [], timelines: [1],
                                newestSegment: "000000010000000000000009", unrecognised: 0, problems: [])]
    }

    static let db = WorkloadSpec(name: "app", rpo: 300, velero: [],
                                 databases: [.init(cluster: "db", serverName: "db", schedule: "0 0 4 * * *", interval: 86400, retention: "7d")])

    @Test func protectedWhenTheChainIsFresh() {
        let s = StatusEvaluator.evaluate(Self.db, velero: [], barman: Self.scan([Self.backup("20261127T043000")]), now: Self.now)
        #expect(s.status == .protected && s.reasons.isEmpty)
        #expect(s.rpoSeconds == 60 && s.newestRecoverablePoint == Self.ago(60))
    }

    @Test func rpoBreachedIsAtRisk() {
        let s = StatusEvaluator.evaluate(Self.db, velero: [], barman: Self.scan([Self.backup("20261127T043000", chainEndAgo: 900)]), now: Self.now)
        #expect(s.status == .atRisk && s.reasons.contains { $0.contains("measured RPO 15m exceeds the objective 5m") })
    }

    @Test func failedAndCrashedNewestAttempts() {
        var s = StatusEvaluator.evaluate(Self.db, velero: [], barman: Self.scan([
            Self.backup("20261126T040000"), Self.backup("20261127T040000", status: "FAILED", end: nil, restorable: false, error: "failure uploading data")]), now: Self.now)
        #expect(s.status == .atRisk && s.reasons.contains { $0.contains("FAILED: failure uploading data") })
        s = StatusEvaluator.evaluate(Self.db, velero: [], barman: Self.scan([
            Self.backup("20261126T040000"), Self.backup("20261127T040000", status: "STARTED", end: nil, restorable: false, beginAgo: 7 * 3600)]), now: Self.now)
        #expect(s.status == .atRisk && s.reasons.contains { $0.contains("never finished") })
        // A STARTED backup that is still young is just in progress.
        s = StatusEvaluator.evaluate(Self.db, velero: [], barman: Self.scan([
            Self.backup("20261126T040000", end: 3 * 3600), Self.backup("20261127T050000", status: "STARTED", end: nil, restorable: false, beginAgo: 600)]), now: Self.now)
        #expect(s.status == .protected, "\(s.reasons)")
    }

    static func drill(_ result: DrillEvidence.Result, rto: Double, error: String? = nil) -> DrillEvidence {
        DrillEvidence(id: "20261127T050000Z-1", workload: "app", mode: "host", host: "h", startedAt: ago(1800), finishedAt: ago(1790),
                      target: "latest", targetTime: nil, result: result, error: error, databases: [], checks: [], rtoSeconds: rto,
                      rtoObjectiveSeconds: 3600, rpoSeconds: 5, rpoObjectiveSeconds: 300, phases: [:], bytesFetched: 1)
    }

    /// The drill's evidence: a failed drill or one slower than the RTO puts the workload at risk.
    @Test func drillEvidenceDecides() {
        var spec = Self.db
        spec.drills = true
        let ok = Self.scan([Self.backup("20261127T043000")])
        var s = StatusEvaluator.evaluate(spec, velero: [], barman: ok, now: Self.now)
        #expect(s.status == .protected && s.reasons == ["never restore-drilled: run drctl verify app"] && s.lastDrill == nil)
        s = StatusEvaluator.evaluate(spec, velero: [], barman: ok, drill: Self.drill(.passed, rto: 12), now: Self.now)
        #expect(s.status == .protected && s.reasons.isEmpty && s.lastDrill?.rtoSeconds == 12 && s.lastDrill?.rpoSeconds == 5)
        s = StatusEvaluator.evaluate(spec, velero: [], barman: ok, drill: Self.drill(.failed, rto: 12, error: "check failed: x"), now: Self.now)
        #expect(s.status == .atRisk && s.reasons.contains { $0.contains("FAILED: check failed: x") })
        s = StatusEvaluator.evaluate(spec, velero: [], barman: ok, drill: Self.drill(.passed, rto: 4000), now: Self.now)
        #expect(s.status == .atRisk && s.reasons.contains { $0.contains("over the RTO objective 1h") })
    }

    @Test func evidenceRoundTripsWithMicroseconds() throws {
        var e = Self.drill(.passed, rto: 1.5)
        e.targetTime = Date(timeIntervalSince1970: 1_795_750_000.123456)
        let back = try DrillEvidence.decoder.decode(DrillEvidence.self, from: DrillEvidence.encoder.encode(e))
        #expect(RFC3339.format(back.targetTime!) == "2026-11-27T03:26:40.123456Z")
        #expect(back.id == e.id && back.rtoSeconds == 1.5)
        #expect(DrillEvidence.key(drctlPrefix: "/drctl/", workload: "app", id: "x") == "drctl/evidence/app/x.json")
        #expect(DrillEvidence.key(drctlPrefix: "", workload: "app", id: "x") == "evidence/app/x.json")
    }

    @Test func overdueBaseBackupAndGaps() {
        var s = StatusEvaluator.evaluate(Self.db, velero: [], barman: Self.scan([Self.backup("20261125T040000", end: 2 * 86400)]), now: Self.now)
        #expect(s.status == .atRisk && s.reasons.contains { $0.contains("is 2d old") })
        s = StatusEvaluator.evaluate(Self.db, velero: [], barman: Self.scan([Self.backup("20261127T040000", gaps: ["00000001000000000000000A"])]), now: Self.now)
        #expect(s.status == .broken && s.reasons.contains { $0.contains("00000001000000000000000A is missing") })
        s = StatusEvaluator.evaluate(Self.db, velero: [], barman: Self.scan([Self.backup("20261127T040000", status: "FAILED", restorable: false)]), now: Self.now)
        #expect(s.status == .broken)
        s = StatusEvaluator.evaluate(Self.db, velero: [], barman: [:], now: Self.now)
        #expect(s.status == .notConfigured)
    }

    static let veleroOnly = WorkloadSpec(name: "abs", rpo: 86400, velero: [.init(tier: "daily", schedule: "0 2 * * *", scheduleName: "abs-daily",
                                                                                   interval: 86400, retention: "7d")], databases: [])

    static func vb(_ name: String, phase: String, completedAgo: Double?, schedule: String = "abs-daily") -> VeleroBackupEntry {
        VeleroBackupEntry(name: name, schedule: schedule, phase: phase, terminal: ["Completed", "PartiallyFailed", "Failed"].contains(phase),
                          startTime: completedAgo.map { ago($0 + 60) }, completionTime: completedAgo.map(ago), expiration: nil,
                          includedNamespaces: ["abs"], errors: 0, warnings: 0, contentsSize: phase == "Failed" ? nil : 10,
                          restorePoint: phase == "Completed", problem: nil)
    }

    @Test func veleroVerdicts() {
        var s = StatusEvaluator.evaluate(Self.veleroOnly, velero: [Self.vb("abs-daily-1", phase: "Completed", completedAgo: 3 * 3600)], barman: [:], now: Self.now)
        #expect(s.status == .protected && s.rpoSeconds == 3 * 3600)
        s = StatusEvaluator.evaluate(Self.veleroOnly, velero: [Self.vb("abs-daily-1", phase: "Completed", completedAgo: 26 * 3600),
                                                               Self.vb("abs-daily-2", phase: "Failed", completedAgo: 2 * 3600)], barman: [:], now: Self.now)
        #expect(s.status == .atRisk && s.reasons.contains { $0.contains("abs-daily-2 ended Failed") })
        s = StatusEvaluator.evaluate(Self.veleroOnly, velero: [Self.vb("abs-daily-1", phase: "Failed", completedAgo: 3600)], barman: [:], now: Self.now)
        #expect(s.status == .broken)
        s = StatusEvaluator.evaluate(Self.veleroOnly, velero: [Self.vb("other-daily-1", phase: "Completed", completedAgo: 3600, schedule: "other-daily")],
                                     barman: [:], now: Self.now)
        #expect(s.status == .notConfigured)
    }
}

struct RetentionTests {
    @Test func recoveryWindowReport() {
        let now = StatusTests.now
        func b(_ id: String, _ daysAgo: Double, _ status: String = "DONE") -> BarmanBackup {
            var x = StatusTests.backup(id, status: status, end: daysAgo * 86400)
            x.status = status
            return x
        }
        let w = RecoveryWindow(cnpg: "7d")!
        #expect(w.description == "RECOVERY WINDOW OF 7 DAYS" && RecoveryWindow(cnpg: "2m")!.seconds == 62 * 86400)
        #expect(RecoveryWindow(cnpg: "7h") == nil && RecoveryWindow(cnpg: "0d") == nil)
        // The backup that straddles the window's start is kept; older ones go; non-DONE ones are never touched.
        let r = BarmanRetention.report([b("20261101T000000", 26), b("20261110T000000", 17, "FAILED"), b("20261112T000000", 15),
                                        b("20261119T000000", 8), b("20261125T000000", 2)], window: w, minimumRedundancy: 0, now: now)
        #expect(r == ["20261125T000000": "VALID", "20261119T000000": "VALID", "20261112T000000": "OBSOLETE",
                      "20261110T000000": "NONE", "20261101T000000": "OBSOLETE"])
        // Everything older than the window: the newest completed backup still stays.
        let old = BarmanRetention.report([b("20261001T000000", 57), b("20261010T000000", 48)], window: w, minimumRedundancy: 0, now: now)
        #expect(old == ["20261010T000000": "VALID", "20261001T000000": "OBSOLETE"])
        let kept = BarmanRetention.report([b("20261001T000000", 57), b("20261010T000000", 48), b("20261020T000000", 38)],
                                          window: w, minimumRedundancy: 2, now: now)
        #expect(kept == ["20261020T000000": "VALID", "20261010T000000": "POTENTIALLY_OBSOLETE", "20261001T000000": "OBSOLETE"])
    }
}

struct RetentionPlanTests {
    /// Four weekly backups and their WAL, a 7-day window: the two oldest are OBSOLETE.
    func plan(locked: Set<String>) -> PrunePlan {
        let layout = BarmanLayout(root: "cnpg")
        func seg(_ n: UInt32) -> WALSegment { WALSegment(timeline: 1, log: 0, segment: n) }
        let starts: [(String, Double, UInt32)] = [("20261101T000000", 26, 2), ("20261107T000000", 20, 8), ("20261112T000000", 15, 0x10), ("20261125T000000", 2, 0x18)]
        let backups = starts.map { id, days, begin -> BarmanBackup in
            var b = StatusTests.backup(id, end: days * 86400)
            b.beginWAL = seg(begin).name
            return b
        }
        var objects = (1...UInt32(0x1A)).map { ObjectRef(key: layout.key(for: .walSegment(server: "db", segment: seg($0), compression: .gzip)), size: 16) }
        for (id, _, _) in starts {
            objects += [ObjectRef(key: layout.backupInfoKey(server: "db", backupID: id), size: 1),
                        ObjectRef(key: layout.key(for: .backupArchive(server: "db", backupID: id, name: "data", compression: .gzip)), size: 100)]
        }
        let scan = BarmanServerScan(server: "db", backups: backups, walSegments: 0x1A, partialSegments: [], timelines: [1],
                                    newestSegment: seg(0x1A).name, unrecognised: 0, problems: [])
        return BarmanRetention.plan(scan: scan, objects: objects, layout: layout, window: RecoveryWindow(cnpg: "7d")!, minimumRedundancy: 0,
                                    now: StatusTests.now, locked: locked)
    }

    @Test func lockedObjectsStayAndALockedBackupStaysWhole() {
        let free = plan(locked: [])
        #expect(free.backupsToDelete == ["20261101T000000", "20261107T000000"])
        #expect(free.keysToDelete.filter { $0.contains("/wals/") }.count == 0x0F, "WAL 01...0F, before the third backup's begin")

        let lockedData = "cnpg/db/base/20261107T000000/data.tar.gz", lockedWAL = "cnpg/db/wals/0000000100000000/000000010000000000000003.gz"
        let p = plan(locked: [lockedData, lockedWAL])
        #expect(p.report["20261107T000000"] == "OBSOLETE_LOCKED" && p.report["20261101T000000"] == "OBSOLETE")
        #expect(p.backupsToDelete == ["20261101T000000"])
        #expect(!p.keysToDelete.contains { $0.contains("20261107T000000") } && !p.keysToDelete.contains(lockedWAL))
        // The kept backup keeps the WAL it needs: only the oldest backup's WAL before its begin goes.
        #expect(p.keysToDelete.filter { $0.contains("/wals/") }.count == 6, "WAL 01, 02, 04...07: \(p.keysToDelete)")
        #expect(p.bytes == 1 + 100 + 6 * 16)
    }
}

struct ObjectLockCheckTests {
    let written = Date(timeIntervalSince1970: 1_795_752_000)
    func wal(lockedFor seconds: TimeInterval?, mode: String = "COMPLIANCE") -> StoredObject {
        StoredObject(key: "cnpg/db/wals/0000000100000000/000000010000000000000007.gz", size: 1, etag: "", lastModified: written,
                   lock: seconds.map { VersionLock(mode: mode, retainUntil: written.addingTimeInterval($0), legalHold: false) })
    }
    let required = ObjectLockCheck.Requirement(mode: "COMPLIANCE", retentionSeconds: 30 * 86400)

    @Test func metWhenTheDefaultAndTheNewestSegmentAreLockedLongEnough() {
        let f = ObjectLockCheck.assess(BucketLock(enabled: true, mode: "COMPLIANCE", days: 30), required: required,
                                       newestWAL: wal(lockedFor: 30 * 86400 - 1))
        #expect(f.problem == nil)
        #expect(f.description == "enabled, default retention COMPLIANCE 30d; newest WAL 000000010000000000000007.gz locked (COMPLIANCE) until 2026-12-27T03:59:59Z")
    }

    @Test func eachShortfallIsNamed() {
        let cases: [(BucketLock, StoredObject?, String)] = [
            (BucketLock(enabled: false), wal(lockedFor: nil), "does not have Object Lock enabled"),
            (BucketLock(enabled: true), nil, "no default retention"),
            (BucketLock(enabled: true, mode: "GOVERNANCE", days: 30), nil, "mode is GOVERNANCE"),
            (BucketLock(enabled: true, mode: "COMPLIANCE", days: 7), nil, "default retention is 7d, shorter than the 30d"),
            (BucketLock(enabled: true, mode: "COMPLIANCE", years: 1), wal(lockedFor: nil), "000000010000000000000007.gz is not locked"),
            (BucketLock(enabled: true, mode: "COMPLIANCE", days: 30), wal(lockedFor: 86400), "locked only until 2026-11-28"),
        ]
        for (bucket, newest, expected) in cases {
            let f = ObjectLockCheck.assess(bucket, required: required, newestWAL: newest)
            #expect(f.problem?.contains(expected) == true, "\(bucket): \(f.problem ?? "nil")")
        }
        // Nothing required: described, never a problem.
        #expect(ObjectLockCheck.assess(BucketLock(enabled: false), required: nil, newestWAL: wal(lockedFor: nil)) ==
                .init(description: "not enabled", problem: nil))
    }
}

/// A store's copy against its maxLag: behind or unreadable is AT RISK; within it changes nothing.
struct CopyStatusTests {
    func judged(_ copies: [WorkloadStatus.Copy]) -> WorkloadStatus {
        var s = StatusEvaluator.evaluate(StatusTests.db, velero: [], barman: StatusTests.scan([StatusTests.backup("20261127T040000")]), drill: nil, now: StatusTests.now)
        StoreCopies.judge(copies, into: &s)
        return s
    }

    @Test func aCopyWithinItsMaxLagChangesNothing() {
        let s = judged([WorkloadStatus.Copy(store: "offsite", lagSeconds: 600, maxLagSeconds: 3600, pending: 3, lastSuccess: StatusTests.ago(900))])
        #expect(s.status == .protected && s.copies.count == 1, "\(s.reasons)")
    }

    @Test func aLaggingOrUnreadableCopyIsAtRisk() {
        var s = judged([WorkloadStatus.Copy(store: "offsite", lagSeconds: 7300, maxLagSeconds: 3600, pending: 12)])
        #expect(s.status == .atRisk && s.reasons.contains("copy to offsite is 2h1m40s behind (maxLag 1h; 12 objects to copy): run drctl copy"), "\(s.reasons)")
        s = judged([WorkloadStatus.Copy(store: "usb", error: "connection refused")])
        #expect(s.status == .atRisk && s.reasons.contains("copy to usb could not be read: connection refused"), "\(s.reasons)")
        // No objective: reported, never judged.
        #expect(judged([WorkloadStatus.Copy(store: "nas", lagSeconds: 1e6, maxLagSeconds: nil, pending: 1)]).status == .protected)
    }
}

/// An archive drctl cannot read cannot be proven: named, so status can say AT RISK before a drill fails.
struct UnreadableCompressionTests {
    @Test func zstdWALAndBzip2BackupsAreNamed() {
        var archive = WALArchive()
        archive.segments[WALSegment(name: "000000010000000000000004")!] = .init(key: "db/wals/0000000100000000/000000010000000000000004.zst", size: 1, lastModified: nil)
        archive.segments[WALSegment(name: "000000010000000000000005")!] = .init(key: "db/wals/0000000100000000/000000010000000000000005.gz", size: 1, lastModified: nil)
        var backup = StatusTests.backup("20261127T040000")
        backup.archiveFiles = [ArchiveFile(name: "data", key: "db/base/20261127T040000/data.tar.bz2", size: 1, compression: "bz2")]
        let scan = StatusTests.scan([backup])["db"]!
        #expect(unreadableCompressions(scan, archive) == ["bzip2", "zstd"])
        #expect(unreadableCompressions(StatusTests.scan([StatusTests.backup("20261127T040000")])["db"]!, WALArchive()).isEmpty, "gzip is read")
    }
}

import Foundation
import Testing
@testable import Catalog
import Layout
import Storage
import Support

/// Long-term tiers (daily/weekly/monthly) beyond the recovery window: which base backups stay,
/// and that each keeps exactly the WAL that makes it consistent. Pure: the clock is injected.
struct TieredRetentionTests {
    typealias R = RetentionSafetyTests
    static let now = R.now
    static let layout = R.layout

    /// Segment number n of timeline 1 (256 to a log with 16 MiB segments).
    static func seg(_ n: UInt32) -> WALSegment { WALSegment(timeline: 1, log: n / 256, segment: n % 256) }

    static func id(_ d: Date) -> String { RFC3339.formatBasic(d).prefix(15).description }

    /// One backup a day for `days` days, the newest ended `offsetHours` ago: backup i (0 = newest)
    /// spans WAL segments 3(days-i)+1 ... +1; WAL runs to the newest segment with `missing` left out.
    static func archive(days: Int, missingData: Set<Int> = [], missingWAL: Set<UInt32> = []) -> (MemoryStorage, [(id: String, end: Date, begin: UInt32)]) {
        var o: [String: [UInt8]] = [:]
        var backups: [(id: String, end: Date, begin: UInt32)] = []
        for i in 0..<days {
            let end = now.addingTimeInterval(-Double(i) * 86400 - 3600)
            let begin = UInt32(3 * (days - i) + 1)
            let backupID = id(end.addingTimeInterval(-60))
            o[layout.backupInfoKey(server: "db", backupID: backupID)] = info(begin: begin, end: end)
            if !missingData.contains(i) { o[layout.key(for: .backupArchive(server: "db", backupID: backupID, name: "data", compression: .gzip))] = [2] }
            backups.append((backupID, end, begin))
        }
        for n in UInt32(1)...UInt32(3 * days + 4) where !missingWAL.contains(n) {
            o[layout.key(for: .walSegment(server: "db", segment: Self.seg(n), compression: .gzip))] = [1]
        }
        o[layout.key(for: .timelineHistory(server: "db", timeline: 2, compression: nil))] = Array("1\t3/00000000\tno recovery target specified\n".utf8)   // a branch beyond the newest segment
        return (MemoryStorage(o), backups)
    }

    static func info(begin: UInt32, end: Date) -> [UInt8] {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss.SSSSSS"
        return Array("""
            begin_time=\(f.string(from: end.addingTimeInterval(-60)))+00:00
            begin_wal=\(Self.seg(begin).name)
            end_time=\(f.string(from: end))+00:00
            end_wal=\(Self.seg(begin + 1).name)
            status=DONE
            timeline=1
            version=150018
            xlog_segment_size=16777216

            """.utf8)
    }

    static func plan(_ s: MemoryStorage, window: String = "7d", tiers: RetentionTiers) throws -> PrunePlan {
        let scan = try BarmanScanner.scan(s, layout: layout, server: "db")
        let objects = s.keys.map { ObjectRef(key: $0, size: 1) }
        return BarmanRetention.plan(scan: scan, objects: objects, layout: layout, window: RecoveryWindow(cnpg: window)!,
                                    minimumRedundancy: 0, now: now, tiers: tiers)
    }

    static func wal(_ n: UInt32) -> String { layout.key(for: .walSegment(server: "db", segment: Self.seg(n), compression: .gzip)) }

    @Test func eachTierKeepsTheNewestBackupOfItsLastPeriods() throws {
        let (s, backups) = Self.archive(days: 120)
        let tiers = RetentionTiers(daily: 10, weekly: 6, monthly: 3)
        let p = try Self.plan(s, tiers: tiers)
        let kept = Set(backups.map(\.id).filter { p.report[$0] != "OBSOLETE" })
        // Computed here independently: for each tier, the newest backup of each of its last N periods.
        var expected = Set<String>()
        let newestFirst = backups.sorted { $0.end > $1.end }
        for (t, n) in [(RetentionTiers.Tier.daily, 10), (.weekly, 6), (.monthly, 3)] {
            var periods: [String] = []
            for b in newestFirst where !periods.contains(RetentionTiers.period(t, of: b.end)) && periods.count < n {
                periods.append(RetentionTiers.period(t, of: b.end))
                expected.insert(b.id)
            }
        }
        // And the window: every backup that ended within 7 days, plus the first before it.
        let point = Self.now.addingTimeInterval(-7 * 86400)
        for b in newestFirst where b.end >= point { expected.insert(b.id) }
        expected.insert(newestFirst.first { $0.end < point }!.id)
        #expect(kept == expected, "unexpected \(kept.subtracting(expected).sorted().map { "\($0) \(p.report[$0] ?? "-")" }) missing \(expected.subtracting(kept).sorted())")
        #expect(p.report.values.contains { $0.hasPrefix("KEPT_") && $0.contains("MONTHLY") }, "\(p.report)")
        #expect(p.policy == "RECOVERY WINDOW OF 7 DAYS + daily 10, weekly 6, monthly 3")
        // The oldest monthly point is about 3 months back; everything older goes.
        #expect(p.backupsToDelete.count == 120 - expected.count)
    }

    @Test func aTierBackupKeepsOnlyTheWALFromItsBeginToItsEnd() throws {
        let (s, backups) = Self.archive(days: 60)
        let p = try Self.plan(s, tiers: RetentionTiers(monthly: 2))
        let deleted = Set(p.keysToDelete)
        let tierKept = backups.filter { BarmanRetention.isTierKept(p.report[$0.id]) }
        #expect(!tierKept.isEmpty, "\(Dictionary(grouping: p.report.values, by: { $0 }).mapValues(\.count)) \(backups.first!.id) \(backups.last!.id)")
        let windowOldest = backups.filter { p.report[$0.id] == "VALID" }.map(\.begin).min()!
        for n in UInt32(1)...UInt32(3 * 60 + 4) {
            let inTier = tierKept.contains { n == $0.begin || n == $0.begin + 1 }
            if n >= windowOldest || inTier {
                #expect(!deleted.contains(Self.wal(n)), "segment \(n) is needed (window from \(windowOldest), tier \(inTier))")
            } else {
                #expect(deleted.contains(Self.wal(n)), "segment \(n) is needed by no kept backup")
            }
        }
        #expect(!deleted.contains { $0.hasSuffix(".history") }, "timeline history files always stay")
        // backup.info of each deleted backup comes after every WAL key: an interrupted prune is seen again.
        let lastWAL = p.keysToDelete.lastIndex { $0.contains("/wals/") }!
        let firstInfo = p.keysToDelete.firstIndex { $0.hasSuffix("backup.info") }!
        #expect(firstInfo > lastWAL)

        // Applied: every kept backup is still restorable; the tier ones as points only.
        var prune = BarmanPrune(storage: s, layout: Self.layout, server: "db", journal: PruneTests.journal(s),
                                window: RecoveryWindow(cnpg: "7d")!, minimumRedundancy: 0, tiers: RetentionTiers(monthly: 2))
        prune.keys = PruneTests.ring
        prune.trustUnproven = true   // barman's mechanics here; proof: ProofTests
        _ = try prune.apply(try prune.prepare(now: Self.now))
        let scan = try BarmanScanner.scan(s, layout: Self.layout, server: "db")
        #expect(scan.backups.count == backups.count - p.backupsToDelete.count)
        let unrestorable = scan.backups.filter { !$0.restorable }.map(\.backupID)
        #expect(unrestorable.isEmpty)
        let status = StatusEvaluator.evaluate(WorkloadSpec(name: "w", rpo: 86400 * 2, velero: [],
                                                           databases: [.init(cluster: "db", serverName: "db", schedule: "0 0 * * *", interval: 86400,
                                                                             retention: "7d", tiers: RetentionTiers(monthly: 2))]),
                                              velero: [], barman: ["db": scan], now: Self.now)
        let source = try #require(status.sources.first)
        #expect(source.retentionOverdue == 0, "a pruned archive is not overdue under its own tiers")
        #expect(source.points?.count == tierKept.count, "\(source)")
        #expect(source.pitrFrom == backups.filter { p.report[$0.id] == "VALID" }.map(\.end).min())
        #expect(status.status == .protected, "\(status.reasons)")
    }

    @Test func onlyRestorableBackupsFillATierAndTheNewestRestorableKeepsItsRange() throws {
        // The newest backup of the second-to-last month has no data: the month keeps its next newest.
        let (s, backups) = Self.archive(days: 70)
        let p0 = try Self.plan(s, tiers: RetentionTiers(monthly: 3))
        let monthlyPick = backups.first { p0.report[$0.id] == "KEPT_MONTHLY" }!
        let i = backups.firstIndex { $0.id == monthlyPick.id }!
        try s.delete([Self.layout.key(for: .backupArchive(server: "db", backupID: monthlyPick.id, name: "data", compression: .gzip))])
        let p = try Self.plan(s, tiers: RetentionTiers(monthly: 3))
        #expect(p.report[monthlyPick.id] == "OBSOLETE", "a backup that cannot be restored is no tier point")
        let next = backups[i + 1]
        #expect(RetentionTiers.period(.monthly, of: next.end) == RetentionTiers.period(.monthly, of: monthlyPick.end) ? p.report[next.id] == "KEPT_MONTHLY" : true,
                "\(p.report[next.id] ?? "-")")

        // Every backup newer than the monthly ones loses its data: the newest restorable one is
        // then a tier backup, and it keeps all WAL after it, not only its own.
        let (s2, b2) = Self.archive(days: 70, missingData: Set(0..<40))
        let q = try Self.plan(s2, tiers: RetentionTiers(monthly: 3))
        let newest = b2[40]
        #expect(q.report[newest.id] == "KEPT_RESTORABLE", "\(q.report[newest.id] ?? "-")")
        for n in newest.begin...UInt32(3 * 70 + 4) { #expect(!q.keysToDelete.contains(Self.wal(n)), "segment \(n)") }
    }

    @Test func withoutTiersThePlanIsBarmansAsBefore() throws {
        let (s, _) = Self.archive(days: 30)
        let scan = try BarmanScanner.scan(s, layout: Self.layout, server: "db")
        let objects = s.keys.map { ObjectRef(key: $0, size: 1) }
        let a = BarmanRetention.plan(scan: scan, objects: objects, layout: Self.layout, window: RecoveryWindow(cnpg: "7d")!, minimumRedundancy: 0, now: Self.now)
        let b = BarmanRetention.plan(scan: scan, objects: objects, layout: Self.layout, window: RecoveryWindow(cnpg: "7d")!, minimumRedundancy: 0, now: Self.now,
                                     tiers: .none)
        #expect(a == b && a.policy == "RECOVERY WINDOW OF 7 DAYS")
    }

    @Test func periodsAreUTCDaysISOWeeksAndMonths() {
        let d = RFC3339.parse("2027-01-01T23:30:00Z")!   // a Friday in ISO week 53 of 2026
        #expect(RetentionTiers.period(.daily, of: d) == "2027-01-01")
        #expect(RetentionTiers.period(.weekly, of: d) == "2026-W53")
        #expect(RetentionTiers.period(.monthly, of: d) == "2027-01")
        #expect(RetentionTiers(daily: 7, monthly: 12).description == "daily 7, monthly 12")
    }
}

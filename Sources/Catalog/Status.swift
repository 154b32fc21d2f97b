import Foundation
import Support
import Policy

/// The seed guide's backup table, per workload, computed from what the bucket holds.
public struct WorkloadStatus: Sendable, Codable, Equatable {
    public enum State: String, Sendable, Codable, Comparable, CaseIterable {
        case protected = "PROTECTED", atRisk = "AT RISK", broken = "BROKEN", notConfigured = "NOT CONFIGURED"
        /// What the bucket holds could not be read (its store unreachable): nothing is known.
        case unknown = "UNKNOWN"
        var rank: Int { [.protected: 0, .atRisk: 1, .broken: 2, .notConfigured: 3, .unknown: 4][self]! }
        public static func < (a: State, b: State) -> Bool { a.rank < b.rank }
    }

    public var workload: String
    public var methods: [String]
    public var schedules: [String]
    public var retention: [String]
    public var lastBackup: Date?
    public var newestRecoverablePoint: Date?
    /// How the recoverable point was derived (segment and object time, or the Velero backup).
    public var recoverablePointEvidence: String?
    public var rpoSeconds: Int?
    public var rpoObjectiveSeconds: Int
    public var status: State
    public var reasons: [String]
    /// The newest restore drill's evidence, in brief.
    public var lastDrill: DrillSummary?
    /// Per Velero tier and per database: what the metrics report.
    public var sources: [Source] = []
    /// Whether the bucket locks the barman-cloud archive (read from the bucket; nil from a catalog).
    public var objectLock: String?
    /// Drill evidence in the bucket that is not sealed with drctl's record key: never taken for a drill.
    public var unauthenticatedEvidence: [String]? = nil
    /// The copies of the workload's store (spec.copies), as last read.
    public var copies: [Copy] = []
    /// The RTO of a restore started now, predicted from drills' rates (databases only).
    public var predictedRTO: RTOModel.Prediction? = nil
    /// Per database whose base-backup schedule cannot meet the RTO at the archive's WAL rate:
    /// the worst case and the schedule that would (drctl lint --measured warns with it).
    public var rtoAdvice: [String]? = nil

    public struct Copy: Sendable, Codable, Equatable {
        /// The copy's ObjectStore.
        public var store: String
        /// How long the oldest object not yet on the copy has waited (0: the copy is complete).
        public var lagSeconds: Double?
        public var maxLagSeconds: Int?
        /// Objects still to copy.
        public var pending: Int?
        /// End of the last copy run that copied everything it listed.
        public var lastSuccess: Date?
        /// Why the copy could not be read.
        public var error: String?
        /// The copy's own newest recoverable point for the workload's databases (what a restore
        /// from the copy alone reaches); nil when it holds none or is encrypted.
        public var newestRecoverablePoint: Date? = nil
        /// While inspecting: that point per barman server.
        public var serverPoints: [String: Date]? = nil
        /// Write-once objects (base backups, WAL, history files) the source changed after they
        /// were copied: an attack or a fault at the source; the copy keeps the originals.
        public var changedAtSource: [String]? = nil
        /// The copy's record is there but not sealed with drctl's record key (it vouches for nothing).
        public var recordUnauthenticated: Bool? = nil
    }

    public struct Source: Sendable, Codable, Equatable {
        /// `velero` or `cnpg`.
        public var kind: String
        /// The Velero tier, or the CNPG cluster.
        public var source: String
        public var lastSuccess: Date?
        public var lastFailure: Date?
        /// Databases: the newest archived WAL segment's time and the gaps after the newest usable base backup.
        public var walLastArchived: Date?
        public var walGaps: Int?
        /// Backups past the policy's retention that are still in the bucket: the retention report
        /// (CNPG's barman retention or Velero's garbage collector is not removing them).
        public var retentionOverdue: Int?
        /// Databases: the start of the point-in-time range (the end of the oldest restorable base
        /// backup whose WAL runs unbroken to the newest), and older restorable backups that are
        /// restore points only (long-term tiers keep only each one's own WAL).
        public var pitrFrom: Date? = nil
        public var points: [Date]? = nil
    }
}

/// A drill as `drctl status` shows it.
public struct DrillSummary: Sendable, Codable, Equatable {
    public var id: String
    public var at: Date
    public var result: String
    public var rtoSeconds: Double
    public var rtoObjectiveSeconds: Int
    /// The oldest restore point the drill's databases reached, and the data lost against the target.
    public var achieved: Date?
    public var rpoSeconds: Double?
    public var error: String?

    public init(_ e: DrillEvidence) {
        id = e.id
        at = e.startedAt
        result = e.result.rawValue
        rtoSeconds = e.rtoSeconds
        rtoObjectiveSeconds = e.rtoObjectiveSeconds
        achieved = e.databases.compactMap(\.achieved).min()
        rpoSeconds = e.rpoSeconds
        error = e.error
    }
}

/// What the evaluation needs to know of one policy, free of the policy types' source locations.
public struct WorkloadSpec: Sendable {
    public struct VeleroTier: Sendable {
        public var tier: String
        public var schedule: String
        public var scheduleName: String
        public var interval: Int
        public var retention: String
        public init(tier: String, schedule: String, scheduleName: String, interval: Int, retention: String) {
            self.tier = tier; self.schedule = schedule; self.scheduleName = scheduleName; self.interval = interval; self.retention = retention
        }
    }
    public struct Database: Sendable {
        public var cluster: String
        public var serverName: String
        public var schedule: String
        public var interval: Int
        public var retention: String
        public var tiers: RetentionTiers
        public init(cluster: String, serverName: String, schedule: String, interval: Int, retention: String, tiers: RetentionTiers = .none) {
            self.cluster = cluster; self.serverName = serverName; self.schedule = schedule; self.interval = interval; self.retention = retention
            self.tiers = tiers
        }
    }
    public var name: String
    public var rpo: Int
    public var velero: [VeleroTier]
    public var databases: [Database]
    public var allowPartiallyFailed: Bool
    public var rto: Int
    /// Whether the policy schedules restore drills.
    public var drills: Bool
    public init(name: String, rpo: Int, velero: [VeleroTier], databases: [Database], allowPartiallyFailed: Bool = false, rto: Int = 3600, drills: Bool = false) {
        self.name = name; self.rpo = rpo; self.velero = velero; self.databases = databases; self.allowPartiallyFailed = allowPartiallyFailed
        self.rto = rto; self.drills = drills
    }
}

public enum StatusEvaluator {

    /// A STARTED backup.info this old is a barman that died mid-backup.
    public static let crashedAfter: TimeInterval = 6 * 3600

    public static func evaluate(_ w: WorkloadSpec, velero: [VeleroBackupEntry], barman: [String: BarmanServerScan], drill: DrillEvidence? = nil,
                                now: Date) -> WorkloadStatus {
        var state = WorkloadStatus.State.protected
        var reasons: [String] = []
        func worse(_ s: WorkloadStatus.State, _ why: String) {
            state = max(state, s)
            reasons.append(why)
        }
        func ago(_ d: Date) -> String { humanize(Int(now.timeIntervalSince(d))) }
        var lastBackup: Date?
        var anythingFound = false
        var rpoPoint: (Date, String)?

        // Velero: the backups of this policy's schedules.
        var veleroPoint: (Date, String)?
        var sources: [WorkloadStatus.Source] = []
        for tier in w.velero {
            let mine = velero.filter { $0.schedule == tier.scheduleName }
            let failed = mine.filter { $0.terminal && !$0.restorePoint }.compactMap { $0.completionTime ?? $0.startTime }.max()
            // Velero deletes a backup soon after its expiration; one an hour past it is not being collected.
            let overdue = mine.filter { ($0.expiration.map { now.timeIntervalSince($0) > 3600 }) ?? false }.count
            sources.append(.init(kind: "velero", source: tier.tier,
                                 lastSuccess: mine.filter(\.restorePoint).compactMap(\.completionTime).max(), lastFailure: failed,
                                 retentionOverdue: overdue))
            if overdue > 0 { reasons.append("\(overdue) '\(tier.tier)' Velero backups are past their expiration and still in the bucket: is Velero's garbage collection running?") }
            if !mine.isEmpty { anythingFound = true }
            let points = mine.filter { $0.restorePoint || (w.allowPartiallyFailed && $0.phase == "PartiallyFailed" && $0.contentsSize != nil) }
            guard let newest = points.compactMap({ b in b.completionTime.map { ($0, b.name) } }).max(by: { $0.0 < $1.0 }) else {
                worse(.broken, mine.isEmpty ? "no Velero backup of schedule \(tier.scheduleName) in the bucket"
                                            : "no completed Velero backup of schedule \(tier.scheduleName) (\(mine.count) failed or unfinished)")
                continue
            }
            lastBackup = max(lastBackup ?? newest.0, newest.0)
            if veleroPoint == nil || newest.0 > veleroPoint!.0 { veleroPoint = (newest.0, "Velero backup \(newest.1)") }
            if now.timeIntervalSince(newest.0) > Double(overdueAfter(interval: tier.interval)) {
                worse(.atRisk, "newest completed '\(tier.tier)' Velero backup \(newest.1) is \(ago(newest.0)) old (schedule \(tier.schedule))")
            }
            if let latest = mine.filter({ $0.terminal }).max(by: { ($0.startTime ?? .distantPast) < ($1.startTime ?? .distantPast) }),
               !latest.restorePoint, latest.name != newest.1 {
                worse(.atRisk, "newest '\(tier.tier)' Velero backup \(latest.name) ended \(latest.phase)")
            }
        }

        // Databases: the end of the unbroken WAL run from the newest restorable base backup.
        var dbPoint: (Date, String)?
        for db in w.databases {
            guard let scan = barman[db.serverName], !(scan.backups.isEmpty && scan.walSegments == 0) else {
                worse(.broken, "no barman-cloud archive for \(db.cluster) (serverName \(db.serverName)) in the bucket")
                continue
            }
            anythingFound = true
            let done = scan.backups.filter { $0.restorable }
            let usable = done.max(by: { ($0.endTime ?? .distantPast) < ($1.endTime ?? .distantPast) })
            // barman's own recovery-window report, as CNPG applies it (minimum redundancy 1).
            // The policy's form (3mo) as barman's window (3 months).
            let window = RecoveryWindow(cnpg: db.retention) ?? TimeSpan(dialect: .policy, db.retention).flatMap { RecoveryWindow(cnpg: $0.cnpgRetention) }
            let overdue = window.map { w in
                BarmanRetention.report(scan.backups, window: w, minimumRedundancy: 1, now: now, tiers: db.tiers).values.filter { $0 == "OBSOLETE" }.count
            }
            // Continuous from a backup: every segment from its begin_wal to the newest is there.
            let continuous = done.filter { $0.walGaps.isEmpty }.compactMap(\.endTime)
            let pitrFrom = continuous.min()
            let points = done.compactMap { b in b.walGaps.isEmpty ? nil : b.endTime }.filter { t in pitrFrom.map { t < $0 } ?? true }.sorted()
            sources.append(.init(kind: "cnpg", source: db.cluster, lastSuccess: usable?.endTime,
                                 lastFailure: scan.backups.filter { $0.status == "FAILED" }.compactMap { $0.endTime ?? $0.beginTime }.max(),
                                 walLastArchived: scan.newestSegmentTime, walGaps: usable?.walGaps.count, retentionOverdue: overdue,
                                 pitrFrom: pitrFrom, points: points.isEmpty ? nil : points))
            if let overdue, overdue > 0 {
                let who = db.tiers.isEmpty ? "is CNPG's retentionPolicy applied?" : "is drctl prune running (the tiers leave CNPG's retentionPolicy out)?"
                let kept = db.tiers.isEmpty ? db.retention : "\(db.retention) + \(db.tiers)"
                reasons.append("\(db.cluster): \(overdue) base backups are past the retention of \(kept) and still in the bucket: \(who) (drctl prune shows and removes them)")
            }
            guard let base = usable else {
                worse(.broken, "\(db.cluster): no restorable base backup (\(scan.backups.count) in the bucket)")
                continue
            }
            if let end = base.endTime { lastBackup = max(lastBackup ?? end, end) }
            if let newestAttempt = scan.backups.max(by: { $0.backupID < $1.backupID }), newestAttempt.backupID != base.backupID {
                switch newestAttempt.status {
                case "FAILED": worse(.atRisk, "\(db.cluster): newest base backup \(newestAttempt.backupID) FAILED: \(newestAttempt.error ?? "no error recorded")")
                case "STARTED" where now.timeIntervalSince(newestAttempt.beginTime ?? now) > crashedAfter:
                    worse(.atRisk, "\(db.cluster): base backup \(newestAttempt.backupID) started \(ago(newestAttempt.beginTime!)) ago and never finished (barman killed?)")
                default: break
                }
            }
            if let end = base.endTime, now.timeIntervalSince(end) > Double(overdueAfter(interval: db.interval)) {
                worse(.atRisk, "\(db.cluster): newest restorable base backup \(base.backupID) is \(ago(end)) old (schedule \(db.schedule))")
            }
            if let gap = base.walGaps.first {
                worse(.broken, "\(db.cluster): WAL segment \(gap) is missing from the archive: recovery from \(base.backupID) stops at \(base.walChainEnd ?? "its begin")")
            }
            if let t = base.walChainEndTime, let seg = base.walChainEnd {
                let evidence = "\(db.cluster): WAL \(seg), written \(RFC3339.formatSeconds(t)), from base backup \(base.backupID)"
                if dbPoint == nil || t < dbPoint!.0 { dbPoint = (t, evidence) }
            }
        }

        // The RPO is the data's: the databases' when there are any, else the newest Velero backup's.
        rpoPoint = w.databases.isEmpty ? veleroPoint : dbPoint
        var rpo: Int?
        if let p = rpoPoint {
            rpo = max(0, Int(now.timeIntervalSince(p.0)))
            if rpo! > w.rpo { worse(.atRisk, "measured RPO \(humanize(rpo!)) exceeds the objective \(humanize(w.rpo))") }
        }
        // Restore drills: the proof that the restore points above restore.
        if let d = drill {
            if d.result == .failed {
                worse(.atRisk, "last restore drill \(d.id) (\(ago(d.startedAt)) ago) FAILED: \(d.error ?? "no cause recorded")")
            } else if d.rtoSeconds > Double(d.rtoObjectiveSeconds) {
                worse(.atRisk, "last restore drill took \(humanize(Int(d.rtoSeconds))), over the RTO objective \(humanize(d.rtoObjectiveSeconds))")
            }
        } else if w.drills {
            reasons.append("never restore-drilled: run drctl verify \(w.name)")
        }
        if !anythingFound { state = .notConfigured }
        return WorkloadStatus(workload: w.name,
                              methods: (w.velero.isEmpty ? [] : ["Velero"]) + (w.databases.isEmpty ? [] : ["CNPG barman-cloud"]),
                              schedules: w.velero.map { "\($0.tier) \($0.schedule)" } + w.databases.map { "\($0.cluster) \($0.schedule)" },
                              retention: w.velero.map { "\($0.tier) \($0.retention)" }
                                + w.databases.map { "\($0.cluster) \($0.retention)" + ($0.tiers.isEmpty ? "" : " + \($0.tiers)") },
                              lastBackup: lastBackup, newestRecoverablePoint: rpoPoint?.0, recoverablePointEvidence: rpoPoint?.1,
                              rpoSeconds: rpo, rpoObjectiveSeconds: w.rpo, status: state, reasons: reasons, lastDrill: drill.map(DrillSummary.init),
                              sources: sources)
    }

    static func humanize(_ s: Int) -> String { TimeSpan.humanizeRoughly(s) }
}

import Catalog
import Foundation
import Support

/// `drctl report`: over a window, per workload, how much of the time its RPO objective was met
/// (from the RPO history: each measurement holds until the next), its drills and their RTOs,
/// its longest breach and why, its copies' lag; the guide's "Current Backup Status" table; and
/// the guide's uptime phases against what was measured. Pure: the caller reads the catalog.
public struct UptimeReport: Sendable, Codable, Equatable {
    public var since: Date
    public var until: Date
    public var workloads: [Workload]
    /// The guide's "Current Backup Status" table, from the current evaluation.
    public var backupStatus: [StatusRow]
    public var uptime: Uptime
    /// Site rehearsals in the window, oldest first: the site RTO over time and what decided it.
    public var rehearsals: [Rehearsal] = []
    /// Drills whose RTO was predicted at their start: predicted against measured.
    public var predictions: [Prediction] = []

    public struct Rehearsal: Sendable, Codable, Equatable {
        public var id: String
        public var at: Date
        public var from: String
        public var result: String
        public var siteRTOSeconds: Double
        public var objectiveSeconds: Int
        public var criticalPath: [String]
        public var criticalPhase: String?
        /// Workloads that did not come back.
        public var failed: [String]
    }

    public struct Prediction: Sendable, Codable, Equatable {
        public var workload: String
        public var drill: String
        public var at: Date
        public var predictedSeconds: Double
        public var lowSeconds: Double
        public var highSeconds: Double
        public var measuredSeconds: Double
        /// (measured - predicted) / predicted.
        public var error: Double
        public var withinRange: Bool
    }

    public struct Workload: Sendable, Codable, Equatable {
        public var workload: String
        public var rpoObjectiveSeconds: Int
        public var rtoObjectiveSeconds: Int
        /// Time covered by measurements, and the part of it the RPO objective was met.
        public var measuredSeconds: Double
        public var metSeconds: Double
        /// metSeconds / measuredSeconds (nil: nothing measured in the window).
        public var rpoMetShare: Double?
        public var samples: Int
        public var breaches: Int
        public var longestBreach: Breach?
        /// Stretches of the window, met or not (for the chart), merged where alike.
        public var spans: [Span]
        public var drillsRun: Int
        public var drillsPassed: Int
        public var rtoP50Seconds: Double?
        public var rtoP95Seconds: Double?
        public var rtoWithinObjective: Int
        public var copies: [Copy]
    }

    public struct Breach: Sendable, Codable, Equatable {
        public var from: Date
        public var to: Date
        public var seconds: Double
        /// The worst RPO measured in it, and what the measurement said.
        public var worstRPOSeconds: Int?
        public var cause: String
    }

    public struct Span: Sendable, Codable, Equatable {
        public var from: Date
        public var to: Date
        public var met: Bool
    }

    public struct Copy: Sendable, Codable, Equatable {
        public var store: String
        public var lagSeconds: Double?
        public var maxLagSeconds: Int?
        public var error: String?
    }

    public struct StatusRow: Sendable, Codable, Equatable {
        public var workload: String
        public var method: String
        public var schedule: String
        public var retention: String
        public var lastBackup: Date?
        public var status: String
    }

    /// The guide's "Expected Uptime After Full Implementation", against the measured share of
    /// time every workload met its RPO objective at once.
    public struct Uptime: Sendable, Codable, Equatable {
        public struct Phase: Sendable, Codable, Equatable {
            public var phase: String
            public var estimate: String
            /// The estimate's lower bound as a share (e.g. 0.999).
            public var target: Double
            public var met: Bool
        }
        public var measuredShare: Double?
        public var measuredSeconds: Double
        public var breachSeconds: Double
        public var phases: [Phase]
    }

    /// The guide's phases, their uptime estimates and the share each implies.
    public static let guidePhases: [(String, String, Double)] = [
        ("Current (Phase 0)", "95-96%", 0.95), ("Phase 1 Complete", "99.5%", 0.995), ("Phase 2 Complete", "99.9%", 0.999),
        ("Phase 3 Complete", "99.95%", 0.9995), ("Phase 4 Complete", "99.99%", 0.9999),
    ]

    /// One workload's objectives as the policies state them.
    public struct Objectives: Sendable {
        public var workload: String
        public var rpoSeconds: Int
        public var rtoSeconds: Int
        public init(workload: String, rpoSeconds: Int, rtoSeconds: Int) { self.workload = workload; self.rpoSeconds = rpoSeconds; self.rtoSeconds = rtoSeconds }
    }

    /// `hold`: how long one measurement stands for at most; a longer silence (drctl serve down,
    /// the store unreachable) is unmeasured time, not time the objective was met.
    public static func build(objectives: [Objectives], samples: [CatalogStore.RPOSample], drills: [DrillEvidence], statuses: [WorkloadStatus],
                             since: Date, now: Date, hold: TimeInterval = 2 * 3600, rehearsals: [RehearsalEvidence] = []) -> UptimeReport {
        var workloads: [Workload] = []
        // Per workload: [since, now] cut into stretches by its measurements.
        for o in objectives.sorted(by: { $0.workload < $1.workload }) {
            let mine = samples.filter { $0.workload == o.workload }.sorted { $0.at < $1.at }
            var spans: [Span] = []
            var breaches: [Breach] = []
            var open: Breach?
            for (i, s) in mine.enumerated() {
                let from = max(s.at, since)
                let to = min(i + 1 < mine.count ? mine[i + 1].at : now, now, s.at.addingTimeInterval(hold))
                guard to > from else { continue }
                let met = s.rpoSeconds.map { $0 <= s.objectiveSeconds } ?? false
                // A silence before this measurement ends an open breach: what happened then is not known.
                if let b = open, b.to < from { breaches.append(b); open = nil }
                spans.append(Span(from: from, to: to, met: met))
                if met {
                    if let b = open { breaches.append(b); open = nil }
                } else if var b = open {
                    b.to = to
                    b.seconds = to.timeIntervalSince(b.from)
                    if let r = s.rpoSeconds, r > (b.worstRPOSeconds ?? -1) { b.worstRPOSeconds = r }
                    open = b
                } else {
                    let why = s.reasons ?? (s.rpoSeconds == nil ? "no recoverable point" : "RPO \(TimeSpan.humanize(s.rpoSeconds!)) over the objective of \(TimeSpan.humanize(s.objectiveSeconds))")
                    open = Breach(from: from, to: to, seconds: to.timeIntervalSince(from), worstRPOSeconds: s.rpoSeconds, cause: "\(s.status): \(why)")
                }
            }
            if let b = open { breaches.append(b) }
            let measured = spans.reduce(0) { $0 + $1.to.timeIntervalSince($1.from) }
            let met = spans.filter(\.met).reduce(0) { $0 + $1.to.timeIntervalSince($1.from) }
            let ds = drills.filter { $0.workload == o.workload && $0.startedAt >= since && $0.startedAt <= now }
            let rtos = ds.filter { $0.result == .passed }.map(\.rtoSeconds).sorted()
            let status = statuses.first { $0.workload == o.workload }
            workloads.append(Workload(
                workload: o.workload, rpoObjectiveSeconds: o.rpoSeconds, rtoObjectiveSeconds: o.rtoSeconds,
                measuredSeconds: measured, metSeconds: met, rpoMetShare: measured > 0 ? met / measured : nil, samples: mine.filter { $0.at >= since }.count,
                breaches: breaches.count, longestBreach: breaches.max { $0.seconds < $1.seconds }, spans: merge(spans),
                drillsRun: ds.count, drillsPassed: ds.filter { $0.result == .passed }.count,
                rtoP50Seconds: percentile(rtos, 0.5), rtoP95Seconds: percentile(rtos, 0.95),
                rtoWithinObjective: rtos.filter { $0 <= Double(o.rtoSeconds) }.count,
                copies: (status?.copies ?? []).map { Copy(store: $0.store, lagSeconds: $0.lagSeconds, maxLagSeconds: $0.maxLagSeconds, error: $0.error) }))
        }
        let rows = statuses.sorted { $0.workload < $1.workload }.map {
            StatusRow(workload: $0.workload, method: $0.methods.joined(separator: " + "), schedule: $0.schedules.joined(separator: "; "),
                      retention: $0.retention.joined(separator: "; "), lastBackup: $0.lastBackup, status: $0.status.rawValue)
        }
        // The cluster is "up" for its backups while every measured workload meets its RPO.
        let (covered, breach) = clusterTime(workloads.map(\.spans), since: since, now: now)
        let share = covered > 0 ? (covered - breach) / covered : nil
        let phases = guidePhases.map { p in Uptime.Phase(phase: p.0, estimate: p.1, target: p.2, met: share.map { $0 >= p.2 } ?? false) }
        var report = UptimeReport(since: since, until: now, workloads: workloads, backupStatus: rows,
                                  uptime: Uptime(measuredShare: share, measuredSeconds: covered, breachSeconds: breach, phases: phases))
        report.rehearsals = rehearsals.filter { $0.startedAt >= since && $0.startedAt <= now }.sorted { $0.startedAt < $1.startedAt }.map {
            Rehearsal(id: $0.id, at: $0.startedAt, from: $0.from, result: $0.result.rawValue, siteRTOSeconds: $0.siteRTOSeconds,
                      objectiveSeconds: $0.siteRTOObjectiveSeconds, criticalPath: $0.criticalPath, criticalPhase: $0.criticalPhase,
                      failed: $0.workloads.filter { $0.result != .passed }.map(\.workload))
        }
        report.predictions = drills.filter { $0.startedAt >= since && $0.startedAt <= now && $0.result == .passed }.sorted { $0.startedAt < $1.startedAt }.compactMap { d in
            d.predictedRTO.map { p in
                Prediction(workload: d.workload, drill: d.id, at: d.startedAt, predictedSeconds: p.seconds, lowSeconds: p.lowSeconds, highSeconds: p.highSeconds,
                           measuredSeconds: d.rtoSeconds, error: p.seconds > 0 ? (d.rtoSeconds - p.seconds) / p.seconds : 0, withinRange: p.contains(d.rtoSeconds))
            }
        }
        return report
    }

    /// Time at least one workload was measured, and the part of it at least one was in breach.
    static func clusterTime(_ timelines: [[Span]], since: Date, now: Date) -> (Double, Double) {
        var edges = Set<Date>([since, now])
        for t in timelines { for s in t { edges.insert(s.from); edges.insert(s.to) } }
        let cuts = edges.sorted()
        var covered = 0.0, breach = 0.0
        for (a, b) in zip(cuts, cuts.dropFirst()) where b > a {
            let mid = a.addingTimeInterval(b.timeIntervalSince(a) / 2)
            let states = timelines.compactMap { t in t.first { $0.from <= mid && mid < $0.to }?.met }
            guard !states.isEmpty else { continue }
            covered += b.timeIntervalSince(a)
            if states.contains(false) { breach += b.timeIntervalSince(a) }
        }
        return (covered, breach)
    }

    static func merge(_ spans: [Span]) -> [Span] {
        var out: [Span] = []
        for s in spans {
            if var last = out.last, last.met == s.met, last.to == s.from {
                last.to = s.to
                out[out.count - 1] = last
            } else {
                out.append(s)
            }
        }
        return out
    }

    /// Nearest-rank percentile of sorted values.
    static func percentile(_ sorted: [Double], _ p: Double) -> Double? {
        guard !sorted.isEmpty else { return nil }
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }
}

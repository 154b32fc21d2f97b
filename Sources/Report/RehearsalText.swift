import Catalog
import Foundation
import Support

/// A site rehearsal as the terminal shows it: one row per workload in the order they came back,
/// then the site's RTO against its objectives and the critical path.
public enum RehearsalText {
    static func s(_ v: Double) -> String { String(format: "%.1fs", v) }

    public static func render(_ e: RehearsalEvidence) -> String {
        var rows = [["WORKLOAD", "RESULT", "STARTED", "HEALTHY", "RTO (MEASURED / OBJECTIVE)", "RPO (COPY / OBJECTIVE)", "LONGEST PHASE", "WAITED FOR"]]
        for w in e.workloads.sorted(by: { ($0.healthyAfter, $0.workload) < ($1.healthyAfter, $1.workload) }) {
            let phase = w.phases.max { ($0.value, $1.key) < ($1.value, $0.key) }.map { "\($0.key) \(s($0.value))" } ?? "-"
            rows.append([w.workload, w.result.rawValue.uppercased(), "+" + s(w.startedAfter), "+" + s(w.healthyAfter),
                         "\(s(w.rtoSeconds)) / \(TimeSpan.humanize(w.rtoObjectiveSeconds))",
                         "\(w.rpoSeconds.map { TimeSpan.humanize(Int($0.rounded())) } ?? "-") / \(TimeSpan.humanize(w.rpoObjectiveSeconds))",
                         phase, w.waitedFor ?? "-"])
        }
        var out = TextTable.render(rows)
        for w in e.workloads where w.error != nil { out += "\n\(w.workload): \(w.error!)" }
        let verdict = e.result != .passed ? "NOT BACK: \(e.workloads.filter { $0.result != .passed }.map(\.workload).joined(separator: ", ")) did not come back"
            : e.met ? "met" : "EXCEEDED"
        out += "\n\nrehearsal \(e.id) from ObjectStore \(e.from) (\(e.mode), \(e.parallel) at a time): \(e.result.rawValue.uppercased())"
        out += "\nsite RTO \(s(e.siteRTOSeconds)): \(verdict) (site objective \(TimeSpan.humanize(e.siteRTOObjectiveSeconds)), largest workload objective \(TimeSpan.humanize(e.largestWorkloadRTOObjectiveSeconds)))"
        if !e.criticalPath.isEmpty {
            out += "\ncritical path: \(e.criticalPath.joined(separator: " -> "))\(e.criticalPhase.map { " (longest phase of \(e.criticalPath.last!): \($0))" } ?? "")"
        }
        return out
    }
}

/// A predicted RTO as one line: the estimate, its stated range, and what it is made of.
public enum RTOText {
    public static func prediction(_ p: RTOModel.Prediction) -> String {
        func s(_ v: Double) -> String { TimeSpan.humanize(max(0, Int(v.rounded()))) }
        let replay = p.replayBytesPerSecond.map { "\(formatBytes(Int64($0)))/s" } ?? "not yet measured"
        return "about \(s(p.seconds)) (\(s(p.lowSeconds)) to \(s(p.highSeconds))): \(formatBytes(p.baseBytes)) of base backup at \(formatBytes(Int64(p.fetchBytesPerSecond)))/s, \(formatBytes(p.walBytes)) of WAL at \(replay) replay, \(s(p.fixedSeconds)) fixed; from \(p.drills.count) drill(s)\(p.objectiveSeconds.map { "; objective \(TimeSpan.humanize($0))\(p.seconds > Double($0) ? ": AT RISK" : "")" } ?? "")"
    }
}

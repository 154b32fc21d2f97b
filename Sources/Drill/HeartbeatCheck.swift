import Catalog
import Foundation
import Policy
import Render
import Support

/// Reads production's heartbeat back from a restored database: the newest row (the RPO measured
/// in the data) and any gap in seq below it, which fails the drill naming what is missing.
public enum HeartbeatCheck {
    /// The statements a cluster drill sends through its check Jobs for this cluster.
    public static func statements(_ c: BackupPolicy.CNPGCluster) -> [DrillChecks.Statement] {
        guard let h = c.heartbeat else { return [] }
        return [HeartbeatSQL.shape, HeartbeatSQL.summary, HeartbeatSQL.gaps].map { DrillChecks.Statement(cluster: c.cluster.value, database: h.database, sql: $0) }
    }

    /// The checks of every database of `policy` that has a heartbeat, each read through
    /// `session(cluster)`; what was read goes onto its database in `databases`.
    public static func runAll(_ policy: BackupPolicy, session: (String) -> (any SQLSession)?, reference: Date,
                              databases: inout [DrillEvidence.Database], progress: (String) -> Void) -> [DrillEvidence.Check] {
        var checks: [DrillEvidence.Check] = []
        for c in policy.cnpg {
            guard let server = session(c.cluster.value), let (check, reading) = run(c, server: server, reference: reference, progress: progress) else { continue }
            checks.append(check)
            if let i = databases.firstIndex(where: { $0.cluster == c.cluster.value }) { databases[i].heartbeat = reading }
        }
        return checks
    }

    /// The check and what was read (nil when nothing could be read).
    public static func run(_ c: BackupPolicy.CNPGCluster, server: any SQLSession, reference: Date,
                           progress: (String) -> Void) -> (DrillEvidence.Check, DrillEvidence.Heartbeat?)? {
        guard let h = c.heartbeat else { return nil }
        let t0 = Date()
        let name = "heartbeat \(c.cluster.value)/\(h.database)"
        func check(_ r: DrillEvidence.Check.Result, _ detail: String) -> DrillEvidence.Check {
            let out = DrillEvidence.Check(name: name, result: r, detail: detail, seconds: Date().timeIntervalSince(t0))
            progress("check \(r.rawValue): \(name) (\(detail))")
            return out
        }
        let reading: DrillEvidence.Heartbeat
        do {
            reading = try read(server, database: h.database)
        } catch {
            return (check(.failed, "could not read \(HeartbeatSQL.table) (set it up: runbooks/heartbeat.md): \(error)"), nil)
        }
        guard let newestSeq = reading.newestSeq, let at = reading.newestAt else {
            return (check(.failed, "\(HeartbeatSQL.table) came back empty: no heartbeat was restored (is drctl serve writing it?)"), reading)
        }
        if at.timeIntervalSince(reference) > 1 {
            return (check(.failed, "the newest heartbeat (seq \(newestSeq)) says \(RFC3339.format(at)), after \(RFC3339.format(reference)): the table does not tell the truth"), reading)
        }
        let seconds = max(0, reference.timeIntervalSince(at))
        let lag = seconds < 60 ? String(format: "%.1fs", seconds) : TimeSpan.humanize(Int(seconds.rounded()))
        if !reading.gaps.isEmpty {
            let missing = reading.gaps.map { $0[0] == $0[1] ? "seq \($0[0])" : "seq \($0[0])-\($0[1])" }.joined(separator: ", ")
            return (check(.failed, "committed heartbeats missing below the newest (seq \(newestSeq) at \(RFC3339.format(at))): \(missing): transactions that did not come back"), reading)
        }
        return (check(.passed, "newest seq \(newestSeq) at \(RFC3339.format(at)) (lsn \(reading.newestLSN ?? "?")), \(lag) before \(RFC3339.format(reference)); \(reading.rows) rows, no gap"), reading)
    }

    /// The restored table's rows, newest row and gaps (the first missing run before the lowest
    /// row counts too: drctl never deletes heartbeats).
    static func read(_ server: any SQLSession, database: String) throws -> DrillEvidence.Heartbeat {
        // The table as the set-up made it, or nothing is read from it: a view, another owner's
        // table or a column of another type could run code or say anything.
        let shape = try server.query(HeartbeatSQL.shape, database: database)
        guard shape == HeartbeatSQL.expectedShape else {
            throw LocalError(shape.isEmpty ? "\(HeartbeatSQL.table) does not exist" : "\(HeartbeatSQL.table) is not the table the set-up made (\(shape.prefix(200))): not read")
        }
        let summary = try server.query(HeartbeatSQL.summary, database: database).split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard summary.count == 5, let rows = Int64(summary[0]) else { throw LocalError("unexpected answer from \(HeartbeatSQL.table): \(summary.joined(separator: "|").prefix(200))") }
        let first = Int64(summary[1]), newest = Int64(summary[2])
        var gaps: [[Int64]] = []
        if let first, first > 1 { gaps.append([1, first - 1]) }
        if rows > 0 {
            for line in try server.query(HeartbeatSQL.gaps, database: database).split(separator: "\n") {
                let f = line.split(separator: "|").compactMap { Int64($0) }
                if f.count == 2 { gaps.append(f) }
            }
        }
        return .init(database: database, rows: rows, firstSeq: first, newestSeq: newest, newestAt: RFC3339.parse(summary[3]),
                     newestLSN: summary[4].isEmpty ? nil : summary[4], gaps: gaps)
    }
}

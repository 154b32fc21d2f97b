import Catalog
import Foundation
import Support
import Policy

/// Runs a policy's drill checks against the restored databases (by CNPG cluster name).
public enum DrillChecks {
    /// One statement a check sends to a restored database.
    public struct Statement: Hashable, Sendable {
        public var cluster: String
        public var database: String
        public var sql: String
    }

    /// Every statement `checks` will run, in order: what a cluster drill sends through its check Jobs.
    public static func statements(_ checks: [BackupPolicy.Check]) -> [Statement] {
        checks.compactMap { check in
            switch check {
            case .sql(let cluster, let database, let query, _): return Statement(cluster: cluster, database: database, sql: query)
            case .freshness(let cluster, let database, let table, let column):
                return Statement(cluster: cluster, database: database, sql: freshnessSQL(table: table, column: column))
            case .podsReady, .resourceCount: return nil
            }
        }
    }

    /// The newest value of a timestamp column, in UTC, '' without rows.
    static func freshnessSQL(table: String, column: String) -> String {
        "select coalesce(to_char(max(\(column))::timestamptz at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '') from \(table)"
    }

    /// The newest replayed commit of a recovered server, in UTC, '' when none was replayed.
    public static let achievedSQL = "select coalesce(to_char(pg_last_xact_replay_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '')"

    /// `reference` is the instant the data should be fresh at: the target, or the drill's
    /// start for `latest`. `podsReady` is the cluster drill's finding when it has one.
    public static func run(_ checks: [BackupPolicy.Check], servers: [String: any SQLSession], rpo: Int, reference: Date,
                           podsReady: (DrillEvidence.Check.Result, String)? = nil, progress: (String) -> Void) -> [DrillEvidence.Check] {
        var out: [DrillEvidence.Check] = []
        for check in checks {
            let t0 = Date()
            let name: String
            let result: (DrillEvidence.Check.Result, String)
            /// Runs `body` against the cluster's restored server; an error fails the check.
            func on(_ cluster: String, _ body: (any SQLSession) throws -> (DrillEvidence.Check.Result, String)) -> (DrillEvidence.Check.Result, String) {
                guard let server = servers[cluster] else { return (.failed, "no restored database for cluster \(cluster) (not in the policy's cnpg list?)") }
                do { return try body(server) } catch { return (.failed, "\(error)") }
            }
            switch check {
            case .sql(let cluster, let database, let query, let expect):
                name = "sql \(cluster)/\(database): \(query) \(expect)"
                result = on(cluster) { server in
                    guard let e = Expectation(expect) else { return (.failed, "'\(expect)' is not an expectation") }
                    let (ok, detail) = e.evaluate(try server.query(query, database: database))
                    return (ok ? .passed : .failed, detail)
                }
            case .freshness(let cluster, let database, let table, let column):
                name = "freshness \(cluster)/\(database): \(table).\(column) within \(TimeSpan.humanize(rpo))"
                result = on(cluster) { server in
                    let out = try server.query(freshnessSQL(table: table, column: column), database: database)
                    guard let newest = RFC3339.parse(out) else { return (.failed, "\(table) has no rows with a \(column)") }
                    let age = reference.timeIntervalSince(newest)
                    let ok = age <= Double(rpo)
                    return (ok ? .passed : .failed,
                            "newest \(column) is \(RFC3339.format(newest)), \(TimeSpan.humanize(max(0, Int(age)))) before \(RFC3339.format(reference))\(ok ? "" : ": older than the RPO")")
                }
            case .podsReady:
                name = "podsReady"
                result = podsReady ?? (.skipped, "needs a cluster drill (--mode cluster); a host drill runs no pods")
            case .resourceCount:
                continue   // counted in the Velero backup's contents (VeleroDrillCheck)
            }
            let r = DrillEvidence.Check(name: name, result: result.0, detail: result.1, seconds: Date().timeIntervalSince(t0))
            progress("check \(r.result.rawValue): \(r.name) (\(r.detail))")
            out.append(r)
        }
        return out
    }
}

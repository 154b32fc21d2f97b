import Catalog
import Foundation
import Policy

/// A check's expectation on a query's first value: `>= 1`, `= 42`, `!= 0`, `nonempty`, `empty`
/// (the forms `drctl lint` accepts).
public struct Expectation: Sendable, Equatable, CustomStringConvertible {
    public enum Op: String, Sendable { case eq = "=", ne = "!=", ge = ">=", le = "<=", gt = ">", lt = "<", nonempty, empty }
    public var op: Op
    public var value: Double?
    public let description: String

    public init?(_ text: String) {
        let s = text.trimmingCharacters(in: .whitespaces)
        description = s
        if s == "nonempty" || s == "empty" { op = Op(rawValue: s)!; value = nil; return }
        for (prefix, op) in [(">=", Op.ge), ("<=", .le), ("!=", .ne), ("==", .eq), ("=", .eq), (">", .gt), ("<", .lt)] where s.hasPrefix(prefix) {
            guard let v = Double(s.dropFirst(prefix.count).trimmingCharacters(in: .whitespaces)) else { return nil }
            self.op = op
            value = v
            return
        }
        return nil
    }

    /// Whether `output` (psql's unaligned, tuples-only text) meets the expectation; the reason if not.
    public func evaluate(_ output: String) -> (ok: Bool, detail: String) {
        let first = output.split(separator: "\n", omittingEmptySubsequences: false).first.map { String($0.split(separator: "|", omittingEmptySubsequences: false).first ?? "") } ?? ""
        switch op {
        case .nonempty: return (!output.isEmpty, output.isEmpty ? "no rows, expected some" : "\(output.split(separator: "\n").count) row(s)")
        case .empty: return (output.isEmpty, output.isEmpty ? "no rows" : "\(output.split(separator: "\n").count) row(s), expected none")
        default:
            guard let v = Double(first.trimmingCharacters(in: .whitespaces)), let want = value else {
                return (false, "got '\(first)', expected a number \(description)")
            }
            let ok: Bool
            switch op {
            case .eq: ok = v == want
            case .ne: ok = v != want
            case .ge: ok = v >= want
            case .le: ok = v <= want
            case .gt: ok = v > want
            case .lt: ok = v < want
            default: ok = false
            }
            return (ok, "got \(first), expected \(description)")
        }
    }
}

/// Runs a policy's drill checks against the restored databases (by CNPG cluster name).
public enum DrillChecks {
    /// `reference` is the instant the data should be fresh at: the target, or the drill's
    /// start for `latest`.
    public static func run(_ checks: [BackupPolicy.Check], servers: [String: RecoveryServer], rpo: Int, reference: Date,
                           progress: (String) -> Void) -> [DrillEvidence.Check] {
        var out: [DrillEvidence.Check] = []
        for check in checks {
            let t0 = Date()
            var r: DrillEvidence.Check
            switch check {
            case .sql(let cluster, let database, let query, let expect):
                let name = "sql \(cluster)/\(database): \(query) \(expect)"
                if let server = servers[cluster] {
                    if let e = Expectation(expect) {
                        do {
                            let (ok, detail) = e.evaluate(try server.query(query, database: database))
                            r = .init(name: name, result: ok ? .passed : .failed, detail: detail, seconds: 0)
                        } catch {
                            r = .init(name: name, result: .failed, detail: "\(error)", seconds: 0)
                        }
                    } else {
                        r = .init(name: name, result: .failed, detail: "'\(expect)' is not an expectation", seconds: 0)
                    }
                } else {
                    r = .init(name: name, result: .failed, detail: "no restored database for cluster \(cluster) (not in the policy's cnpg list?)", seconds: 0)
                }
            case .freshness(let cluster, let database, let table, let column):
                let name = "freshness \(cluster)/\(database): \(table).\(column) within \(Duration.humanize(rpo))"
                if let server = servers[cluster] {
                    do {
                        let out = try server.query("select coalesce(to_char(max(\(column))::timestamptz at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '') from \(table)", database: database)
                        if let newest = PreciseTime.parse(out) {
                            let age = reference.timeIntervalSince(newest)
                            let ok = age <= Double(rpo)
                            r = .init(name: name, result: ok ? .passed : .failed,
                                      detail: "newest \(column) is \(PreciseTime.format(newest)), \(Duration.humanize(max(0, Int(age)))) before \(PreciseTime.format(reference))\(ok ? "" : ": older than the RPO")",
                                      seconds: 0)
                        } else {
                            r = .init(name: name, result: .failed, detail: "\(table) has no rows with a \(column)", seconds: 0)
                        }
                    } catch {
                        r = .init(name: name, result: .failed, detail: "\(error)", seconds: 0)
                    }
                } else {
                    r = .init(name: name, result: .failed, detail: "no restored database for cluster \(cluster)", seconds: 0)
                }
            case .podsReady:
                r = .init(name: "podsReady", result: .skipped, detail: "needs a cluster drill (--mode cluster); a host drill runs no pods", seconds: 0)
            case .resourceCount:
                continue   // counted in the Velero backup's contents (VeleroDrillCheck)
            }
            r.seconds = Date().timeIntervalSince(t0)
            progress("check \(r.result.rawValue): \(r.name) (\(r.detail))")
            out.append(r)
        }
        return out
    }
}

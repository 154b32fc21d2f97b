import Foundation
import Kube
import Support
import Render

/// A cluster drill's SQL, run by short-lived Jobs in the scratch namespace: for when drctl
/// cannot reach the recovered cluster's `-rw` Service or may not read its Secret (in the cluster,
/// drctl's RBAC has no Secret reads outside its own namespace). All Jobs of a drill start at once;
/// answers are looked up by (database, statement).
public final class CheckJobs: SQLSession {
    struct Key: Hashable { var database: String; var sql: String }
    var answers: [Key: Result<String, LocalError>] = [:]

    /// Runs `statements` (all of one cluster) and waits for every Job, by `deadline`.
    public init(kube: KubeClient, namespace: String, cluster: String, port: Int, image: String, statements: [DrillChecks.Statement],
                deadline: Date, progress: (String) -> Void) throws {
        let unique = Array(Set(statements.map { Key(database: $0.database, sql: $0.sql) })).sorted { ($0.database, $0.sql) < ($1.database, $1.sql) }
        var jobs: [(Key, String)] = []
        for (i, key) in unique.enumerated() {
            let name = "drctl-check-\(cluster.prefix(40))-\(i + 1)"
            let args = PsqlSession.arguments(host: "\(cluster)-rw", port: port, user: "postgres", database: key.database, sql: key.sql)
            _ = try kube.create(DrillManifests.checkJob(name: name, namespace: namespace, cluster: cluster, psqlArguments: args, image: image) as [String: Any])
            jobs.append((key, name))
        }
        progress("\(cluster): \(jobs.count) check Job(s) started in \(namespace) (image \(image))")
        for (key, name) in jobs {
            let job = try kube.waitFor(apiVersion: "batch/v1", kind: "Job", namespace: namespace, name: name, deadline: deadline) { o in
                let s = o?["status"] as? [String: Any] ?? [:]
                return (s["succeeded"] as? Int ?? 0) > 0 || (s["failed"] as? Int ?? 0) > 0
            }
            let ok = ((job?["status"] as? [String: Any])?["succeeded"] as? Int ?? 0) > 0
            let pod = try kube.list(apiVersion: "v1", kind: "Pod", namespace: namespace, labelSelector: "job-name=\(name)")
                .compactMap { ($0["metadata"] as? [String: Any])?["name"] as? String }.last
            let log = try pod.map { try kube.log(namespace: namespace, pod: $0) } ?? ""
            answers[key] = ok ? .success(log.trimmingCharacters(in: .newlines))
                : .failure(LocalError("query on \(key.database) failed (Job \(namespace)/\(name)): \(log.trimmingCharacters(in: .whitespacesAndNewlines).suffix(500))"))
        }
    }

    public func query(_ sql: String, database: String) throws -> String {
        guard let a = answers[Key(database: database, sql: sql)] else { throw LocalError("no check Job ran this statement on \(database)") }
        return try a.get()
    }
}

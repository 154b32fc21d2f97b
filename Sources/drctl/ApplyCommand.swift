import ArgumentParser
import Foundation
import Support
import Kube
import HTTP
import ObjectStore
import Policy
import Render
import Yams

/// How to reach the cluster: shared by the commands that talk to Kubernetes.
struct KubeOptions: ParsableArguments {
    @Option(help: ArgumentHelp("kubeconfig file (default: KUBECONFIG, else ~/.kube/config, else the pod's service account).", valueName: "file"))
    var kubeconfig: String?
    @Option(help: "kubeconfig context (default: its current-context).") var context: String?
    @Option(name: [.short, .long], help: "Namespace for objects that do not name one (default: the context's).") var namespace: String?

    func client(timeouts: TimeoutOptions = TimeoutOptions()) throws -> KubeClient {
        try makeKubeClient(KubeConfig.resolve(kubeconfig: kubeconfig, context: context, namespace: namespace), timeouts: timeouts)
    }
}

/// A client for `config`: its token registered for redaction, its unsafe transports warned about.
func makeKubeClient(_ config: KubeConfig, timeouts: TimeoutOptions = TimeoutOptions()) throws -> KubeClient {
    if case .token(let t) = config.auth { KnownSecrets.shared.add([t]) }
    for w in config.transportWarnings { warnOnce(w) }
    return try KubeClient(config: config, timeouts: timeouts)
}

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Render the policies and server-side-apply the result to the cluster.",
        discussion: """
            Applies what drctl render produces, as field manager "drctl": objects are created or \
            updated field by field, and re-applying unchanged policies changes nothing. A field that \
            another manager owns (someone edited it by hand, another tool manages it) is a conflict \
            and is reported, not overwritten, unless --force-conflicts. The CNPG Cluster patch is \
            applied only to a Cluster that exists (drctl never creates a database cluster). Objects \
            whose API is not installed (Velero, CNPG, the Barman Cloud Plugin, Prometheus Operator) are \
            reported and skipped. Refuses to apply when drctl lint finds errors. Exit status 1 when \
            any object failed.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var kube: KubeOptions
    @Argument(help: ArgumentHelp("Policy files or directories.", valueName: "path")) var paths: [String] = ["policies"]
    @Option(help: ArgumentHelp("server: the API server checks and computes everything but stores nothing; client: only print the objects.", valueName: "server|client"))
    var dryRun: DryRun?
    @Flag(help: "Show, per object, which fields would change (uses a server dry run).") var diff = false
    @Flag(help: "Take ownership of fields another manager holds.") var forceConflicts = false
    @Option(help: "Base URL of the runbooks that alerts link to.") var runbookBaseURL = RenderOptions().runbookBaseURL
    @Option(name: [.short, .long], help: "Output format: table or json.") var output: OutputFormat = .table

    enum DryRun: String, ExpressibleByArgument, CaseIterable { case server, client }

    struct Result: Encodable {
        var kind: String
        var name: String
        var namespace: String?
        /// created, configured, unchanged, would create, would change, skipped, failed.
        var action: String
        var detail: String?
        var changes: [String]?
    }

    func run() throws {
        global.bootstrapLogging()
        var failed = false
        try runReportingErrors {
            let set = try loadCheckedPolicies(paths)
            let objects = try renderPolicies(set, paths: paths, options: RenderOptions(runbookBaseURL: runbookBaseURL))
                .filter { ($0.path as NSString).lastPathComponent != "kustomization.yaml" }   // kustomize's, not the cluster's
                .flatMap { file in file.objects.map { (file.path, $0 as [String: Any]) } }
                .sorted { Self.order($0.1) < Self.order($1.1) }
            if dryRun == .client {
                for (_, o) in objects { print(try Yams.dump(object: o, width: -1, sortKeys: true), terminator: "---\n") }
                return
            }
            let client = try kube.client()
            var results: [Result] = []
            for (path, object) in objects {
                let r = apply(object, patch: path.hasSuffix("-cluster-patch.yaml"), client: client)
                if r.action == "failed" { failed = true }
                results.append(r)
                if output == .table { printResult(r) }
            }
            if output == .json { try printJSON(results) }
        }
        if failed { throw Exit.failure }
    }

    /// Namespaces first, then what others refer to, then the rest.
    static func order(_ o: [String: Any]) -> Int {
        let rank: [String: Int] = ["Namespace": 0, "ServiceAccount": 1, "ClusterRole": 2, "Role": 2, "ClusterRoleBinding": 3, "RoleBinding": 3,
                                   "ConfigMap": 4, "Secret": 4]
        return rank[o["kind"] as? String ?? ""] ?? 5
    }

    func apply(_ object: [String: Any], patch: Bool, client: KubeClient) -> Result {
        let kind = object["kind"] as? String ?? "?"
        let apiVersion = object["apiVersion"] as? String ?? "?"
        let meta = object["metadata"] as? [String: Any] ?? [:]
        let name = meta["name"] as? String ?? "?"
        let ns = meta["namespace"] as? String
        var r = Result(kind: kind, name: name, namespace: ns, action: "failed")
        do {
            guard try client.serves(apiVersion) else {
                r.action = "skipped"
                r.detail = "\(apiVersion) is not served by the cluster (is its operator installed?)"
                return r
            }
            let before = try client.get(apiVersion: apiVersion, kind: kind, namespace: ns, name: name)
            if patch && before == nil {
                r.action = "skipped"
                r.detail = "\(kind) \(name) does not exist; drctl adds its backup section once it does"
                return r
            }
            let server = dryRun == .server || diff
            var conflict: KubeError?
            var after: [String: Any]
            do {
                after = try client.apply(object, force: forceConflicts, dryRun: server)
            } catch let e as KubeError where e.isConflict && diff {
                // Show what would change all the same, and that it needs --force-conflicts.
                conflict = e
                after = try client.apply(object, force: true, dryRun: true)
            }
            if server {
                let changes = before.map { Self.changes(from: $0, to: after) } ?? []
                r.action = before == nil ? "would create" : changes.isEmpty ? "unchanged" : "would change"
                if let conflict { r.detail = "\(conflict.message); apply needs --force-conflicts" }
                if diff && !changes.isEmpty { r.changes = changes }
            } else {
                let rvBefore = (before?["metadata"] as? [String: Any])?["resourceVersion"] as? String
                let rvAfter = (after["metadata"] as? [String: Any])?["resourceVersion"] as? String
                r.action = before == nil ? "created" : rvBefore == rvAfter ? "unchanged" : "configured"
            }
        } catch let e as KubeError where e.isConflict {
            r.detail = "\(e.message)\(forceConflicts ? "" : " (another manager owns these fields; --force-conflicts takes them)")"
        } catch {
            r.detail = KnownSecrets.shared.redactor.redact("\(error)")
        }
        return r
    }

    /// Leaf fields that differ, as `.spec.schedule: "0 2 * * *" -> "30 2 * * *"` (server-owned metadata ignored).
    static func changes(from a: [String: Any], to b: [String: Any]) -> [String] {
        func leaves(_ o: Any, _ prefix: String, _ out: inout [String: String]) {
            if let d = o as? [String: Any], !d.isEmpty {
                for (k, v) in d {
                    if prefix == ".metadata" && ["resourceVersion", "managedFields", "uid", "creationTimestamp", "generation"].contains(k) { continue }
                    if prefix.isEmpty && k == "status" { continue }
                    leaves(v, prefix + "." + k, &out)
                }
            } else {
                out[prefix] = (try? JSONSerialization.data(withJSONObject: o, options: [.fragmentsAllowed, .sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? "\(o)"
            }
        }
        var x: [String: String] = [:], y: [String: String] = [:]
        leaves(a, "", &x)
        leaves(b, "", &y)
        return Set(x.keys).union(y.keys).sorted().compactMap { k in x[k] == y[k] ? nil : "\(k): \(x[k] ?? "(none)") -> \(y[k] ?? "(none)")" }
    }

    func printResult(_ r: Result) {
        let id = "\(r.kind.lowercased())/\(r.name)\(r.namespace.map { " -n \($0)" } ?? "")"
        print("\(id) \(r.action)\(r.detail.map { ": \($0)" } ?? "")")
        for c in r.changes ?? [] { print("    \(c)") }
    }
}

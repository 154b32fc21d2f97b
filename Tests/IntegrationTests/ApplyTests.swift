import Foundation
import Testing
import Kube
import TestSupport

/// `drctl apply` of the shipped policies against the Kubernetes API test server.
@Suite(.serialized) struct ApplyTests {
    static let namespaces = ["velero", "drctl", "n8n-prod", "keycloak"]

    func setUp(_ api: KubeAPI) throws -> (KubeClient, String) {
        let kubeconfig = try api.kubeconfig("token")
        let c = try KubeClient(config: KubeConfig.resolve(kubeconfig: kubeconfig, context: nil, namespace: nil))
        for ns in Self.namespaces { _ = try c.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": ns]]) }
        return (c, kubeconfig)
    }

    func apply(_ kubeconfig: String, _ extra: [String] = []) throws -> (Int32, String) {
        try run(drctlBinary, ["apply", packageRoot.appendingPathComponent("policies").path, "--kubeconfig", kubeconfig] + extra)
    }

    @Test func appliesExactlyTheRenderedObjectsOnceAndReportsConflicts() throws {
        let api = try KubeAPI()
        let (c, kubeconfig) = try setUp(api)

        // Server dry run: everything would be created, nothing is stored.
        var (st, out) = try apply(kubeconfig, ["--dry-run=server"])
        #expect(st == 0 && out.contains("schedule/n8n-prod-daily -n velero would create"), "\(out)")
        #expect(out.contains("cluster/n8n-postgres -n n8n-prod skipped: Cluster n8n-postgres does not exist"), "\(out)")
        #expect(try c.list(apiVersion: "velero.io/v1", kind: "Schedule", namespace: "velero").isEmpty)

        (st, out) = try apply(kubeconfig)
        #expect(st == 0, "\(out)")
        // Exactly the rendered objects (the kustomization and the Cluster patches aside).
        let rendered = tempPath("rendered")
        defer { try? FileManager.default.removeItem(atPath: rendered) }
        _ = try run(drctlBinary, ["render", packageRoot.appendingPathComponent("policies").path, "--out", rendered])
        let (_, files) = try run("/bin/sh", ["-c", "cat $(find \(rendered) -name '*.yaml' ! -name kustomization.yaml ! -name '*cluster-patch*' | sort) | grep -c '^kind:'"])
        let created = out.split(separator: "\n").filter { $0.hasSuffix(" created") }
        #expect(created.count == Int(files.trimmingCharacters(in: .whitespacesAndNewlines)), "\(out)")
        let schedules = try c.list(apiVersion: "velero.io/v1", kind: "Schedule", namespace: "velero")
        #expect(schedules.count == 7)
        let daily = try #require(try c.get(apiVersion: "velero.io/v1", kind: "Schedule", namespace: "velero", name: "n8n-prod-daily"))
        #expect((daily["spec"] as? [String: Any])?["schedule"] as? String == "CRON_TZ=UTC 30 2 * * *")

        // Re-applying changes nothing.
        (st, out) = try apply(kubeconfig)
        #expect(st == 0 && !out.contains(" created") && !out.contains(" configured"), "\(out)")

        // Once the Cluster exists, its backup section is applied to it.
        _ = try c.create(["apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
                          "metadata": ["name": "n8n-postgres", "namespace": "n8n-prod"], "spec": ["instances": 2]])
        (st, out) = try apply(kubeconfig)
        #expect(out.contains("cluster/n8n-postgres -n n8n-prod configured"), "\(out)")
        let cluster = try #require(try c.get(apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", namespace: "n8n-prod", name: "n8n-postgres"))
        let spec = cluster["spec"] as? [String: Any] ?? [:]
        #expect(spec["instances"] as? Int == 2 && spec["backup"] != nil, "\(cluster)")

        // Someone changes a field drctl manages: --diff shows it, apply reports the conflict, --force-conflicts takes it back.
        var edited = daily
        edited["spec"] = ["schedule": "0 12 * * *"]
        edited["metadata"] = ["name": "n8n-prod-daily", "namespace": "velero"]
        _ = try c.apply(edited, fieldManager: "kubectl-edit", force: true)
        (st, out) = try apply(kubeconfig, ["--diff"])
        #expect(out.contains("schedule/n8n-prod-daily -n velero would change") && out.contains(".spec.schedule: \"0 12 * * *\" -> \"CRON_TZ=UTC 30 2 * * *\""), "\(out)")
        (st, out) = try apply(kubeconfig)
        #expect(st == 1 && out.contains("schedule/n8n-prod-daily -n velero failed") && out.contains("conflict with \"kubectl-edit\""), "\(out)")
        (st, out) = try apply(kubeconfig, ["--force-conflicts"])
        #expect(st == 0 && out.contains("schedule/n8n-prod-daily -n velero configured"), "\(out)")
    }

    @Test func objectsOfMissingOperatorsAreSkippedByName() throws {
        let api = try KubeAPI(groups: ["v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1", "monitoring.coreos.com/v1"])
        let (_, kubeconfig) = try setUp(api)
        let (st, out) = try apply(kubeconfig)
        #expect(st == 0 && out.contains("schedule/n8n-prod-daily -n velero skipped: velero.io/v1 is not served"), "\(out)")
        #expect(out.contains("prometheusrule/drctl-backups") || out.contains("prometheusrule/"), "\(out)")
    }

    @Test func lintErrorsRefuseTheApply() throws {
        let api = try KubeAPI()
        let (_, kubeconfig) = try setUp(api)
        let dir = tempPath("bad-policies")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "apiVersion: drctl.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {name: x}\nspec: {objectStore: nope, retension: 1}\n"
            .write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let (st, out) = try run(drctlBinary, ["apply", dir, "--kubeconfig", kubeconfig])
        #expect(st != 0 && out.contains("the policies have errors"), "\(out)")
    }
}

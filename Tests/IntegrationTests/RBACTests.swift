import Foundation
import Testing
import TestSupport

/// deploy/rbac.yaml is exactly what drctl needs: a cluster drill and a restore into a new
/// namespace, run as drctl's service account held to those rules by the Kubernetes API test
/// server, pass with no request refused, and every verb on every resource granted is used by them.
/// The recovered database's Service is not on the test host's network and drctl may not read
/// its Secret (it asks first: no refused request): the checks go through Jobs.
@Suite(.serialized) struct RBACTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    /// (group, resource, verb, namespace or "*" for cluster-wide) for every rule in deploy/rbac.yaml.
    static func granted() throws -> Set<[String]> {
        let script = """
            import sys, yaml, json
            docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
            scope = {}
            for d in docs:
                if d["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                    scope[(d["roleRef"]["kind"], d["roleRef"]["name"])] = d["metadata"].get("namespace", "*") if d["kind"] == "RoleBinding" else "*"
            out = []
            for d in docs:
                if d["kind"] in ("Role", "ClusterRole"):
                    for r in d.get("rules", []):
                        for g in r["apiGroups"]:
                            for res in r["resources"]:
                                for v in r["verbs"]:
                                    out.append([g, res, v, scope.get((d["kind"], d["metadata"]["name"]), "unbound")])
            print(json.dumps(out))
            """
        let (st, out) = try run(toolsPython, ["-c", script, packageRoot.appendingPathComponent("deploy/rbac.yaml").path])
        try #require(st == 0, "\(out)")
        return Set(try #require(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String]]))
    }

    @Test func deployedRBACIsExactlyWhatDrillsAndRestoresUse() throws {
        try #require(FileManager.default.isExecutableFile(atPath: toolsPython), "no .venv-tools: run scripts/install-deps.sh")
        let granted = try Self.granted()
        #expect(!granted.contains { $0[0] == "" && $0[1] == "secrets" && ["get", "list", "watch"].contains($0[2]) && $0[3] == "*" },
                "no cluster-wide Secret reads: \(granted.filter { $0[1] == "secrets" })")
        #expect(!granted.contains { $0[3] == "unbound" }, "a role nobody is bound to")

        let f = try ClusterFixture(rgw: rgw, bucket: "rbacdrill", network: "cluster", rbac: packageRoot.appendingPathComponent("deploy/rbac.yaml").path,
                                   user: "serviceaccount", secretName: "backup-s3-credentials")
        // An expired drill namespace for the janitor.
        _ = try f.admin.create(["apiVersion": "v1", "kind": "Namespace",
                                "metadata": ["name": "drill-old-20200101000000", "labels": ["drctl.dev/drill": "true"],
                                             "annotations": ["drctl.dev/drill-expires": "2020-01-01T00:00:00Z"]]])
        try f.policy("= 42")
        var (st, out) = try f.verify()
        print(out)
        #expect(st == 0 && out.contains("drill of n8n-prod PASSED"), "\(out)")
        #expect(out.contains(": the checks run as Jobs in drill-n8n-prod-"), "\(out)")
        #expect(out.contains("got 42, expected = 42") && out.contains("[passed] freshness"), "\(out)")
        #expect(try f.drillNamespaces().isEmpty)
        (st, out) = try f.restore(into: "n8n-prod-restored")
        #expect(st == 0 && out.contains("Restored n8n-prod into namespace n8n-prod-restored"), "\(out)")

        let audit = try f.api.audit()
        let refused = audit.filter { $0["allowed"] as? Bool != true }
        #expect(refused.isEmpty, "requests the deployed RBAC refuses: \(refused)")
        // A request is covered by a grant in its namespace or a cluster-wide one.
        var unused = granted
        for a in audit {
            let g = a["group"] as? String ?? "", r = a["resource"] as? String ?? "", v = a["verb"] as? String ?? "", ns = a["namespace"] as? String ?? ""
            if unused.remove([g, r, v, ns]) == nil { unused.remove([g, r, v, "*"]) }
        }
        #expect(unused.isEmpty, "granted in deploy/rbac.yaml but used by no drill or restore request: \(unused.sorted { $0.description < $1.description })")

        // The checks fail honestly through Jobs too.
        try f.policy("= 999")
        (st, out) = try f.verify()
        #expect(st == 1 && out.contains("got 42, expected = 999"), "\(out)")
    }
}

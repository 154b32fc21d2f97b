import Foundation
import Testing
import Kube
import TestSupport

/// deploy/rbac.yaml and deploy/admission.yaml are exactly what drctl needs, and the server holds
/// drctl to them: a cluster drill, run as drctl's service account against those rules (enforced
/// by the Kubernetes API test server: RBAC with escalation prevention, the ValidatingAdmissionPolicy
/// evaluated as CEL), passes with no request refused, every verb on every resource granted is used
/// by it, and forged requests a compromised drctl could make (deleting a live namespace, binding
/// its role in production, a Restore into production) are refused by the server.
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
            # drctl-drill is bound by drctl itself, in each drill namespace ("drill").
            scope = {("ClusterRole", "drctl-drill"): "drill"}
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

        let deploy = packageRoot.appendingPathComponent("deploy").path
        let f = try ClusterFixture(rgw: rgw, bucket: "rbacdrill", network: "cluster", rbac: deploy + "/rbac.yaml", admission: deploy + "/admission.yaml",
                                   user: "serviceaccount", secretName: "backup-s3-credentials")
        // An expired drill namespace for the janitor, with no RoleBinding in it (its drill died before making one).
        _ = try f.admin.create(["apiVersion": "v1", "kind": "Namespace",
                                "metadata": ["name": "drill-old-20200101000000", "labels": ["drctl.dev/drill": "true"],
                                             "annotations": ["drctl.dev/drill-expires": "2020-01-01T00:00:00Z"]]])
        try f.policy("= 42")
        var (st, out) = try f.contained("the drill as drctl's service account", allowOutside: { $0.contains("drill-old-20200101000000") }) { try f.verify() }
        print(out)
        #expect(st == 0 && out.contains("drill of n8n-prod PASSED"), "\(out)")
        #expect(out.contains(": the checks run as Jobs in drill-n8n-prod-"), "\(out)")
        #expect(out.contains("ClusterRole drctl-drill bound to system:serviceaccount:drctl:drctl in this namespace only"), "\(out)")
        #expect(out.contains("got 42, expected = 42") && out.contains("[passed] freshness"), "\(out)")
        #expect(try f.drillNamespaces().isEmpty)

        let audit = try f.api.audit().filter { ($0["user"] as? String)?.hasPrefix("system:serviceaccount:drctl:") == true }
        let refused = audit.filter { $0["allowed"] as? Bool != true }
        #expect(refused.isEmpty, "requests the deployed RBAC refuses: \(refused)")
        // A request is covered by a grant in its namespace, in a drill namespace, or a cluster-wide one.
        var unused = granted
        for a in audit {
            let g = a["group"] as? String ?? "", r = a["resource"] as? String ?? "", v = a["verb"] as? String ?? "", ns = a["namespace"] as? String ?? ""
            if unused.remove([g, r, v, ns]) == nil && !(ns.hasPrefix("drill-") && unused.remove([g, r, v, "drill"]) != nil) { unused.remove([g, r, v, "*"]) }
        }
        #expect(unused.isEmpty, "granted in deploy/rbac.yaml but used by no drill request: \(unused.sorted { $0.description < $1.description })")

        // The checks fail honestly through Jobs too.
        try f.policy("= 999")
        (st, out) = try f.contained("a failing drill") { try f.verify() }
        #expect(st == 1 && out.contains("got 42, expected = 999"), "\(out)")

        // What a compromised drctl would try, refused by the server (RBAC or admission), not by drctl's code.
        let sa = try KubeClient(config: KubeConfig.resolve(kubeconfig: f.kubeconfig, context: nil, namespace: nil))
        func refusedByServer(_ what: String, _ body: () throws -> Void) {
            do {
                try body()
                Issue.record("\(what) was allowed")
            } catch let e as KubeError {
                #expect(e.code == 403 || e.code == 422, "\(what): \(e)")
                print("refused by the server: \(what): \(e)")
            } catch {
                Issue.record("\(what): \(error)")
            }
        }
        _ = try f.admin.create(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": ["name": "cluster-admin"],
                                "rules": [["apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]]]])
        let mark = try f.api.writes().count
        refusedByServer("deleting a live namespace") { try sa.delete(apiVersion: "v1", kind: "Namespace", name: "n8n-prod") }
        refusedByServer("binding drctl-drill in production") {
            _ = try sa.create(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": ["name": "x", "namespace": "n8n-prod"],
                               "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "drctl-drill"],
                               "subjects": [["kind": "ServiceAccount", "name": "drctl", "namespace": "drctl"]]])
        }
        refusedByServer("binding a wider role in a drill namespace") {
            _ = try sa.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "drill-forged-1", "labels": ["drctl.dev/drill": "true",
                                                                                                              "pod-security.kubernetes.io/enforce": "baseline"]]])
            _ = try sa.create(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": ["name": "x", "namespace": "drill-forged-1"],
                               "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"],
                               "subjects": [["kind": "ServiceAccount", "name": "drctl", "namespace": "drctl"]]])
        }
        refusedByServer("an unlabelled namespace") { _ = try sa.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "drill-unlabelled"]]) }
        // Forged Restores that are otherwise exactly what a drill sends: each is refused for its one difference.
        let valid: [String: Any] = ["backupName": f.backupName, "includeClusterResources": false, "existingResourcePolicy": "none",
                                    "excludedResources": ["clusters.postgresql.cnpg.io", "networkpolicies.networking.k8s.io"]]
        refusedByServer("a Restore of every namespace into their live names (a literal * key maps nothing)") {
            _ = try sa.create(["apiVersion": "velero.io/v1", "kind": "Restore", "metadata": ["name": "forged", "namespace": "velero"],
                               "spec": valid.merging(["includedNamespaces": ["*"], "namespaceMapping": ["*": "drill-forged-1"]]) { $1 }])
        }
        refusedByServer("a Restore of a glob") {
            _ = try sa.create(["apiVersion": "velero.io/v1", "kind": "Restore", "metadata": ["name": "forged-glob", "namespace": "velero"],
                               "spec": valid.merging(["includedNamespaces": ["n8n-*"], "namespaceMapping": ["n8n-*": "drill-forged-1"]]) { $1 }])
        }
        refusedByServer("a Restore that overwrites existing objects") {
            _ = try sa.create(["apiVersion": "velero.io/v1", "kind": "Restore", "metadata": ["name": "forged-update", "namespace": "velero"],
                               "spec": valid.merging(["includedNamespaces": ["n8n-prod"], "namespaceMapping": ["n8n-prod": "drill-forged-1"],
                                                      "existingResourcePolicy": "update"]) { $1 }])
        }
        refusedByServer("a Velero plugin configuration under drctl's ConfigMap name") {
            _ = try sa.apply(["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "drctl-drill-n8n-prod", "namespace": "velero",
                                                                                   "labels": ["velero.io/plugin-config": "", "velero.io/pod-volume-restore": "RestoreItemAction"]],
                              "data": ["image": "attacker/restore-helper"]], fieldManager: "drctl", force: true)
        }
        refusedByServer("binding drctl-drill to everyone") {
            _ = try sa.create(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": ["name": "everyone", "namespace": "drill-forged-1"],
                               "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "drctl-drill"],
                               "subjects": [["kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:authenticated"]]])
        }
        refusedByServer("a drill namespace without Pod Security") {
            _ = try sa.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "drill-forged-2", "labels": ["drctl.dev/drill": "true"]]])
        }
        refusedByServer("a Restore mapped into production") {
            _ = try sa.create(["apiVersion": "velero.io/v1", "kind": "Restore", "metadata": ["name": "forged2", "namespace": "velero"],
                               "spec": ["backupName": f.backupName, "includedNamespaces": ["n8n-prod"], "namespaceMapping": ["n8n-prod": "keycloak"],
                                        "includeClusterResources": false, "excludedResources": ["clusters.postgresql.cnpg.io"]]])
        }
        // A namespace that merely looks like a drill's, with drctl-drill bound in it by an administrator: admission still refuses its deletion.
        _ = try f.admin.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "drill-lookalike"]])
        _ = try f.admin.create(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": ["name": "drctl-drill", "namespace": "drill-lookalike"],
                                "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "drctl-drill"],
                                "subjects": [["kind": "ServiceAccount", "name": "drctl", "namespace": "drctl"]]])
        refusedByServer("deleting an unlabelled drill-named namespace") { try sa.delete(apiVersion: "v1", kind: "Namespace", name: "drill-lookalike") }
        let forged = try f.api.writes().dropFirst(mark).filter { ($0["user"] as? String)?.hasPrefix("system:serviceaccount:drctl:") == true }
        #expect(forged.allSatisfy { $0["name"] as? String == "drill-forged-1" }, "only the labelled drill namespace was made: \(forged)")
        #expect(try f.admin.get(apiVersion: "v1", kind: "Namespace", name: "n8n-prod") != nil)
    }
}

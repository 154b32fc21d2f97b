import Foundation
import Testing
import Kube
import Render
import TestSupport

/// deploy/admission.yaml as the API server enforces it (the test server's CEL is Google's, with
/// cel-go's semantics), tried by the accounts a drill meets: Velero's (cluster-admin, as its chart
/// installs it), CNPG's operator's, another operator's, kube-controller-manager's controllers and
/// drctl's own, with deploy/rbac.yaml.
@Suite(.serialized) struct AdmissionPolicyTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    static let deploy = packageRoot.appendingPathComponent("deploy").path
    static let accounts = ["velero": "system:serviceaccount:velero:velero", "cnpg": "system:serviceaccount:cnpg-system:cnpg-manager",
                           "operator": "system:serviceaccount:some-operator:manager"]

    /// The test server with deploy/'s RBAC and admission, `accounts` bound to cluster-admin, and a
    /// drill namespace (labelled, sealed) with drctl-drill bound in it, as a drill makes it.
    func cluster(rbac: String = deploy + "/rbac.yaml", tokens extra: [String: String] = [:]) throws -> (KubeAPI, KubeClient, [String: KubeClient]) {
        var tokens: [String: String] = extra
        for (name, user) in Self.accounts { tokens["tok-\(name)"] = user }
        let api = try KubeAPI(controllers: rgw, rbac: rbac, admission: Self.deploy + "/admission.yaml", extraTokens: tokens)
        let admin = try KubeClient(config: KubeConfig.resolve(kubeconfig: try api.kubeconfig("token"), context: nil, namespace: nil))
        _ = try admin.create(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": ["name": "cluster-admin"],
                              "rules": [["apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]]]])
        var clients: [String: KubeClient] = [:]
        for (name, user) in Self.accounts {
            let parts = user.split(separator: ":").map(String.init)
            _ = try admin.create(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": ["name": "\(name)-admin"],
                                  "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"],
                                  "subjects": [["kind": "ServiceAccount", "name": parts[3], "namespace": parts[2]]]])
            clients[name] = try KubeClient(config: KubeConfig.resolve(kubeconfig: try api.kubeconfig(bearer: "tok-\(name)", name: name), context: nil, namespace: nil))
        }
        let drctl = try KubeClient(config: KubeConfig.resolve(kubeconfig: try api.kubeconfig("serviceaccount"), context: nil, namespace: nil))
        clients["drctl"] = drctl
        for ns in ["velero", "drctl", "n8n-prod"] { _ = try admin.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": ns]]) }
        // As a drill makes it: the namespace, and drctl-drill bound in it by drctl to itself.
        _ = try drctl.create(plain(DrillManifests.namespace("drill-admission-1", drillID: "1", workload: "n8n-prod", expires: "2999-01-01T00:00:00Z")))
        _ = try drctl.create(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": ["name": "drctl-drill", "namespace": "drill-admission-1"],
                              "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "drctl-drill"],
                              "subjects": [["kind": "ServiceAccount", "name": "drctl", "namespace": "drctl"]]])
        return (api, admin, clients)
    }

    /// The server's answer to a create: nil when admitted, else the error.
    static func refusal(_ c: KubeClient, _ o: [String: Any], dryRun: Bool = false) -> KubeError? {
        do { _ = try c.create(o, dryRun: dryRun); return nil } catch let e as KubeError { return e } catch {
            Issue.record("not an answer of the server: \(error)")
            return nil
        }
    }

    static func workload(_ apiVersion: String, _ kind: String, _ name: String, ns: String, labels: [String: String]) -> [String: Any] {
        let template: [String: Any] = ["metadata": ["labels": labels], "spec": ["containers": [["name": "x", "image": "busybox"]]]]
        var spec: [String: Any] = ["selector": ["matchLabels": labels], "template": template]
        switch kind {
        case "ReplicationController": spec = ["replicas": 1, "selector": labels, "template": template]
        case "Job": spec = ["template": ["metadata": ["labels": labels], "spec": ["restartPolicy": "Never", "containers": [["name": "x", "image": "busybox"]]]]]
        case "CronJob": spec = ["schedule": "*/5 * * * *", "jobTemplate": ["spec": ["template": ["metadata": ["labels": labels],
                                                                                                 "spec": ["restartPolicy": "Never", "containers": [["name": "x", "image": "busybox"]]]]]]]
        case "Pod": return ["apiVersion": "v1", "kind": "Pod", "metadata": ["name": name, "namespace": ns, "labels": labels], "spec": template["spec"]!]
        default: break
        }
        return ["apiVersion": apiVersion, "kind": kind, "metadata": ["name": name, "namespace": ns], "spec": spec]
    }

    static let podMakers = [("v1", "ReplicationController"), ("apps/v1", "Deployment"), ("apps/v1", "DaemonSet"), ("apps/v1", "ReplicaSet"),
                            ("apps/v1", "StatefulSet"), ("batch/v1", "Job"), ("batch/v1", "CronJob"), ("v1", "Pod")]

    /// Finding: a ReplicationController with CNPG's labels on its pods was admitted in a drill
    /// namespace (the rule listed Deployments, DaemonSets and Pods), and its controller made
    /// the pods. The rule is now on pods, whoever makes them, and on the pod templates the
    /// built-in kinds carry: every kind that makes pods is refused, by Velero's account and any
    /// other, and only CNPG's operator makes CNPG-labelled pods there.
    @Test func aPodPosingAsTheDatabaseIsRefusedWhicheverKindMakesIt() throws {
        let (api, admin, as_) = try cluster()
        let velero = try #require(as_["velero"]), cnpg = try #require(as_["cnpg"]), op = try #require(as_["operator"])
        let posing = ["cnpg.io/cluster": "app-db", "role": "primary"]
        for (gv, kind) in Self.podMakers {
            let e = Self.refusal(velero, Self.workload(gv, kind, "impostor-\(kind.lowercased())", ns: "drill-admission-1", labels: posing))
            #expect(e?.code == 403 && e?.message.contains("drctl-drill-database-pods") == true, "Velero's \(kind) with CNPG's labels: \(e.map { "\($0)" } ?? "admitted")")
        }
        // A kind nobody listed: another operator's controller makes the pods itself.
        let e = Self.refusal(op, Self.workload("v1", "Pod", "operator-made", ns: "drill-admission-1", labels: ["cnpg.io/instanceRole": "primary"]))
        #expect(e?.code == 403, "an operator's pod with a CNPG label: \(e.map { "\($0)" } ?? "admitted")")
        #expect(Self.refusal(admin, Self.workload("v1", "Pod", "admin-made", ns: "drill-admission-1", labels: ["postgresql": "app-db"])) != nil,
                "not even an administrator's")
        // CNPG's operator makes its instance pods.
        #expect(Self.refusal(cnpg, Self.workload("v1", "Pod", "app-db-1", ns: "drill-admission-1", labels: posing)) == nil)
        // An innocent ReplicationController restored by Velero: admitted, its pod made by its controller...
        _ = try velero.create(Self.workload("v1", "ReplicationController", "web", ns: "drill-admission-1", labels: ["app": "web"]))
        var pod: [String: Any]?
        try waitUntil(100, every: 50_000) {
            pod = try admin.list(apiVersion: "v1", kind: "Pod", namespace: "drill-admission-1", labelSelector: "app=web").first
            return pod != nil
        }
        let podName = try #require((pod?["metadata"] as? [String: Any])?["name"] as? String, "the ReplicationController's pod")
        let writes = try api.writes()
        #expect(writes.contains { $0["name"] as? String == podName && $0["verb"] as? String == "create" && $0["user"] as? String == "replication-controller" },
                "made by replication-controller")
        // ... whose labels a pods/status write cannot turn into CNPG's (podStatusStrategy keeps request labels).
        var status = try #require(pod)
        var meta = status["metadata"] as? [String: Any] ?? [:]
        meta["labels"] = ["app": "web", "cnpg.io/cluster": "app-db"]
        status["metadata"] = meta
        let (code, _, out) = try api.raw("PUT", "/api/v1/namespaces/drill-admission-1/pods/\(podName)/status",
                                         body: Array(try JSONSerialization.data(withJSONObject: status)), bearer: "tok-velero")
        #expect(code == 403 && out.contains("drctl-drill-database-pods"), "a status write adding CNPG's label: \(code) \(out)")
        // CNPG's label alone is what matters: a chart's `role: primary` is not.
        #expect(Self.refusal(velero, Self.workload("apps/v1", "StatefulSet", "redis", ns: "drill-admission-1", labels: ["app": "redis", "role": "primary"])) == nil)
        // Restored pods may not read the store's keys drctl copies in; restored Services get no
        // external address; restored RoleBindings bind no one outside the namespace.
        var reader = Self.workload("apps/v1", "Deployment", "reader", ns: "drill-admission-1", labels: ["app": "reader"])
        var rspec = reader["spec"] as? [String: Any] ?? [:]
        rspec["template"] = ["metadata": ["labels": ["app": "reader"]],
                             "spec": ["containers": [["name": "x", "image": "busybox",
                                                      "envFrom": [["secretRef": ["name": "drctl-object-store-credentials"]]]]]]]
        reader["spec"] = rspec
        #expect(Self.refusal(velero, reader)?.message.contains("only CNPG's pods read the object store keys") == true)
        for (what, spec) in [("externalIPs", ["externalIPs": ["10.0.0.10"], "ports": [["port": 443]]]),
                             ("a load balancer", ["type": "LoadBalancer", "ports": [["port": 443]]])] as [(String, [String: Any])] {
            let e = Self.refusal(velero, ["apiVersion": "v1", "kind": "Service", "metadata": ["name": "svc-\(what.count)", "namespace": "drill-admission-1"], "spec": spec])
            #expect(e?.message.contains("no external address") == true, "a restored Service with \(what): \(e.map { "\($0)" } ?? "admitted")")
        }
        #expect(Self.refusal(velero, ["apiVersion": "v1", "kind": "Service", "metadata": ["name": "plain", "namespace": "drill-admission-1"],
                                      "spec": ["ports": [["port": 80]], "selector": ["app": "web"]]]) == nil)
        let everyone = Self.refusal(velero, ["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": ["name": "everyone", "namespace": "drill-admission-1"],
                                             "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"],
                                             "subjects": [["kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:authenticated"]]])
        #expect(everyone?.message.contains("binds only that namespace's service accounts") == true, "\(everyone.map { "\($0)" } ?? "admitted")")
        #expect(Self.refusal(velero, ["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": ["name": "own", "namespace": "drill-admission-1"],
                                      "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"],
                                      "subjects": [["kind": "ServiceAccount", "name": "app", "namespace": "drill-admission-1"]]]) == nil)
        // Outside drill namespaces nothing changes: production's restores go on.
        #expect(Self.refusal(velero, Self.workload("apps/v1", "Deployment", "app-db-pooler", ns: "n8n-prod", labels: posing)) == nil)
        #expect(Self.refusal(velero, ["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": ["name": "restored"], "rules": []]) == nil,
                "a cluster-scoped object Velero restores (request.namespace is absent: the policies must not fail on it)")
        // Velero never makes a drill namespace.
        let ns = Self.refusal(velero, ["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "drill-made-by-velero"]])
        #expect(ns?.code == 403 && ns?.message.contains("drctl-drill-namespaces") == true, "\(ns.map { "\($0)" } ?? "admitted")")
    }

    /// Finding: the policies named drctl's account in drctl's namespace; a kustomize `namespace:`
    /// turned them off while the RBAC stayed. drctl's account is now matched by its name wherever
    /// it runs, and a drill refuses to start when the server does not confine its account (here
    /// renamed, as a kustomize namePrefix would): nothing written.
    @Test func aDrillRefusesToStartWithAnAccountTheServerDoesNotConfine() throws {
        let renamed = try String(contentsOfFile: Self.deploy + "/rbac.yaml", encoding: .utf8)
            .replacingOccurrences(of: "{kind: ServiceAccount, name: drctl, namespace: drctl}", with: "{kind: ServiceAccount, name: prod-drctl, namespace: drctl}")
        let rbac = tempPath("rbac-renamed.yaml")
        try renamed.write(toFile: rbac, atomically: true, encoding: .utf8)
        defer { unlink(rbac) }
        let f = try ClusterFixture(rgw: rgw, bucket: "unconfined", rbac: rbac, admission: Self.deploy + "/admission.yaml", secretName: "backup-s3-credentials",
                                   extraTokens: ["tok-renamed": "system:serviceaccount:drctl:prod-drctl", "tok-moved": "system:serviceaccount:backup:drctl"])
        try f.policy("= 42")
        let mark = try f.api.writes().count
        let (st, out) = try run(drctlBinary, ["verify", "n8n-prod", "--mode", "cluster", "--kubeconfig", try f.api.kubeconfig(bearer: "tok-renamed", name: "renamed"),
                                              "--policies", f.policies], env: f.env)
        #expect(st == 1 && out.contains("the API server does not confine system:serviceaccount:drctl:prod-drctl")
                && out.contains("a dry-run namespace that is not a drill's was admitted"), "\(out)")
        let written = try f.api.writes().dropFirst(mark).filter { ($0["user"] as? String)?.contains("prod-drctl") == true }
        #expect(written.isEmpty, "nothing written before the refusal: \(written)")
        #expect(try f.drillNamespaces().isEmpty)
        // Installed into another namespace, drctl's account is held all the same.
        let moved = try KubeClient(config: KubeConfig.resolve(kubeconfig: try f.api.kubeconfig(bearer: "tok-moved", name: "moved"), context: nil, namespace: nil))
        _ = try f.admin.create(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": ["name": "moved-bootstrap"],
                                "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "drctl-drill-bootstrap"],
                                "subjects": [["kind": "ServiceAccount", "name": "drctl", "namespace": "backup"]]])
        do {
            try moved.delete(apiVersion: "v1", kind: "Namespace", name: "n8n-prod")
            Issue.record("drctl's account in another namespace deleted a live namespace")
        } catch let e as KubeError {
            #expect(e.code == 403 && e.message.contains("drctl-drill-scope"), "\(e)")
        }
    }

    /// Finding: the Restore rule checked 2 of a drill's exclusions and nothing else of it, and a
    /// recovery Cluster was unchecked. Each forgery differs from what a drill sends in one field
    /// and is refused; what a drill sends is admitted.
    @Test func aDrillsRestoreAndRecoveryClusterArePinned() throws {
        let (api, _, as_) = try cluster()
        defer { withExtendedLifetime(api) {} }
        let drctl = try #require(as_["drctl"])
        let mapping = [DrillIsolation.Mapping(source: "n8n-prod", scratch: "drill-admission-1")]
        let valid = plain(DrillIsolation.veleroRestore(name: "drill-admission-1", backup: "n8n-prod-daily-1", mappings: mapping,
                                                                      veleroNamespace: "velero", modifiers: DrillIsolation.modifiersName(workload: "n8n-prod")))
        #expect(Self.refusal(drctl, valid, dryRun: true) == nil, "what a drill sends")
        /// `object` with its spec changed.
        func changed(_ object: [String: Any], _ change: (inout [String: Any]) -> Void) -> [String: Any] {
            var o = object
            var s = o["spec"] as? [String: Any] ?? [:]
            change(&s)
            o["spec"] = s
            return o
        }
        func spec(_ change: (inout [String: Any]) -> Void) -> [String: Any] { changed(valid, change) }
        let forgeries: [(String, [String: Any])] = [
            ("an exclusion left out", spec { $0["excludedResources"] = (DrillIsolation.excludedResources.filter { $0 != "ingresses.networking.k8s.io" }) }),
            ("no label selector", spec { $0.removeValue(forKey: "labelSelector") }),
            ("CNPG's objects selected in", spec { $0["labelSelector"] = ["matchExpressions": [["key": "cnpg.io/cluster", "operator": "Exists"]]] }),
            ("an orLabelSelectors", spec { $0["orLabelSelectors"] = [["matchLabels": ["app": "x"]]] }),
            ("restore hooks", spec { $0["hooks"] = ["resources": [["name": "h"]]] }),
            ("status restored", spec { $0["restoreStatus"] = ["includedResources": ["*"]] }),
            ("modifiers from another ConfigMap", spec { $0["resourceModifier"] = ["kind": "ConfigMap", "name": "velero-plugin-config"] }),
            ("a mapping of a namespace not included", spec { $0["namespaceMapping"] = ["n8n-prod": "drill-admission-1", "keycloak": "keycloak"] }),
            ("cluster-scoped resources", spec { $0["includeClusterResources"] = true }),
            ("included resources", spec { $0["includedResources"] = ["*"] }),
            ("two namespaces into one", spec {
                $0["includedNamespaces"] = ["n8n-prod", "keycloak"]
                $0["namespaceMapping"] = ["n8n-prod": "drill-admission-1", "keycloak": "drill-admission-1"]
            }),
        ]
        for (what, forged) in forgeries {
            let e = Self.refusal(drctl, forged, dryRun: true)
            #expect(e?.code == 403 && e?.message.contains("a drill's Restore is exactly a drill's") == true, "\(what): \(e.map { "\($0)" } ?? "admitted")")
        }
        let origin: [String: Any] = ["name": "origin", "barmanObjectStore": ["destinationPath": "s3://b/cnpg", "endpointURL": "http://rgw:80",
                                                                             "s3Credentials": ["accessKeyId": ["name": "s3", "key": "a"], "secretAccessKey": ["name": "s3", "key": "b"]]]]
        let cluster: [String: Any] = ["apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": ["name": "app-db", "namespace": "drill-admission-1"],
                                      "spec": ["instances": 1, "enableSuperuserAccess": true, "storage": ["size": "10Gi"],
                                               "bootstrap": ["recovery": ["source": "origin"]], "externalClusters": [origin]]]
        #expect(Self.refusal(drctl, cluster, dryRun: true) == nil, "what a drill sends")
        func clusterSpec(_ change: (inout [String: Any]) -> Void) -> [String: Any] { changed(cluster, change) }
        let clusterForgeries: [(String, [String: Any])] = [
            ("a backup section archiving into production", clusterSpec { $0["backup"] = ["barmanObjectStore": origin["barmanObjectStore"]!] }),
            ("an archiving plugin", clusterSpec { $0["plugins"] = [["name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true]] }),
            ("a replica of production", clusterSpec { $0["replica"] = ["enabled": true, "source": "origin"] }),
            ("a fresh database instead of a recovery", clusterSpec { $0["bootstrap"] = ["initdb": ["database": "app"]] }),
            ("three instances", clusterSpec { $0["instances"] = 3 }),
            ("a claim template binding a volume of its choosing", clusterSpec { $0["storage"] = ["size": "10Gi", "pvcTemplate": ["volumeName": "pvc-production-data"]] }),
            ("a recovery from volume snapshots", clusterSpec { $0["bootstrap"] = ["recovery": ["source": "origin", "volumeSnapshots": ["storage": ["name": "prod-snap", "kind": "VolumeSnapshot", "apiGroup": "snapshot.storage.k8s.io"]]]] }),
            ("managed services", clusterSpec { $0["managed"] = ["services": ["additional": [["selectorType": "rw", "serviceTemplate": ["metadata": ["name": "lb"], "spec": ["type": "LoadBalancer"]]]]]] }),
        ]
        for (what, forged) in clusterForgeries {
            let e = Self.refusal(drctl, forged, dryRun: true)
            #expect(e?.code == 403 && e?.message.contains("recovery Cluster only recovers") == true, "\(what): \(e.map { "\($0)" } ?? "admitted")")
        }
        // What else drctl makes in a drill namespace is a drill's, or refused.
        let ownForgeries: [(String, [String: Any], String)] = [
            ("a namespace labelled as production's", ["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "drill-admission-2",
                "labels": ["drctl.dev/drill": "true", "team": "payments", "pod-security.kubernetes.io/enforce": "baseline"]]],
             "drctl's labels and drctl.dev/ annotations only"),
            ("another Secret", ["apiVersion": "v1", "kind": "Secret", "metadata": ["name": "stolen", "namespace": "drill-admission-1"], "data": ["k": "dg=="]],
             "the only Secret drctl makes"),
            ("an allow-all network rule", ["apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": ["name": "drctl-drill-seal-2", "namespace": "drill-admission-1"],
                                           "spec": ["podSelector": [:], "policyTypes": ["Egress"], "egress": [[:]]]], "its seal and its recovery rules"),
            ("a Job with a restored service account", ["apiVersion": "batch/v1", "kind": "Job", "metadata": ["name": "j", "namespace": "drill-admission-1"],
                "spec": ["template": ["spec": ["restartPolicy": "Never", "serviceAccountName": "restored-admin",
                    "containers": [["name": "x", "image": "busybox"]]]]]], "drctl's Jobs are check Jobs"),
            ("a Job reading a restored Secret", ["apiVersion": "batch/v1", "kind": "Job", "metadata": ["name": "j2", "namespace": "drill-admission-1"],
                "spec": ["template": ["spec": ["restartPolicy": "Never", "automountServiceAccountToken": false,
                    "containers": [["name": "x", "image": "busybox", "envFrom": [["secretRef": ["name": "production-secrets"]]]]]]]]], "drctl's Jobs are check Jobs"),
        ]
        for (what, forged, message) in ownForgeries {
            let e = Self.refusal(drctl, forged, dryRun: true)
            #expect(e?.code == 403 && e?.message.contains(message) == true, "\(what): \(e.map { "\($0)" } ?? "admitted")")
        }
        let checkJob = plain(DrillManifests.checkJob(name: "drctl-check-1", namespace: "drill-admission-1", cluster: "app-db", psqlArguments: ["-c", "select 1"],
                                                     image: DrillManifests.postgresImage(major: 15)))
        #expect(Self.refusal(drctl, checkJob, dryRun: true) == nil, "a drill's check Job")
        for np in DrillIsolation.networkPolicies(namespace: "drill-admission-1", drctlNamespace: "drctl", cnpgNamespace: "cnpg-system", clusters: ["app-db"],
                                                 egress: .init(endpoint: "http://10.0.0.7:7480", apiServer: .init(addresses: ["10.0.0.1"], ports: [6443]))) {
            #expect(Self.refusal(drctl, plain(np), dryRun: true) == nil, "a drill's network rule")
        }
        let store: [String: Any] = ["apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore", "metadata": ["name": "app-db", "namespace": "drill-admission-1"],
                                    "spec": ["configuration": origin["barmanObjectStore"]!, "retentionPolicy": "1d"]]
        let e = Self.refusal(drctl, store, dryRun: true)
        #expect(e?.code == 403 && e?.message.contains("no retention") == true, "an ObjectStore with retention: \(e.map { "\($0)" } ?? "admitted")")
    }
}

func plain(_ o: [String: any Sendable]) -> [String: Any] { o }

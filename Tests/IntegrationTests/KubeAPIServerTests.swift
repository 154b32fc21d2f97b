import Foundation
import Testing
import Kube
import TestSupport

/// The test API server itself (Tests/KubeAPIServer) where it must fail as kube-apiserver does:
/// CEL's error semantics and type checking, every kind that makes pods and the identities it makes
/// them as, subresources in admission, namespaces' lifecycle and finalizers, watches, Pod
/// Security, and the validation of built-in kinds. Each behaviour is cited in the server's source.
@Suite(.serialized) struct KubeAPIServerTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    static func client(_ api: KubeAPI) throws -> KubeClient {
        try KubeClient(config: KubeConfig.resolve(kubeconfig: try api.kubeconfig("token"), context: nil, namespace: nil))
    }

    static func json(_ o: [String: Any]) throws -> [UInt8] { Array(try JSONSerialization.data(withJSONObject: o)) }

    /// A ValidatingAdmissionPolicy of one validation on `resources` CREATE and UPDATE, bound to Deny.
    static func policy(_ k: KubeClient, _ name: String, _ expression: String, resources: [String] = ["configmaps"], group: String = "",
                       namespaceLabel: String? = nil) throws {
        var constraints: [String: Any] = ["resourceRules": [["apiGroups": [group], "apiVersions": ["*"], "resources": resources,
                                                            "operations": ["CREATE", "UPDATE"]]]]
        if let namespaceLabel { constraints["namespaceSelector"] = ["matchLabels": [namespaceLabel: "true"]] }
        _ = try k.create(["apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy", "metadata": ["name": name],
                          "spec": ["failurePolicy": "Fail", "matchConstraints": constraints, "validations": [["expression": expression]]]])
        _ = try k.create(["apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding", "metadata": ["name": name],
                          "spec": ["policyName": name, "validationActions": ["Deny"]]])
    }

    static func configMap(_ name: String, _ ns: String, labels: [String: String] = [:]) -> [String: Any] {
        ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": name, "namespace": ns, "labels": labels], "data": ["k": "v"]]
    }

    static func error(_ body: () throws -> Any) -> KubeError? {
        do { _ = try body(); return nil } catch let e as KubeError { return e } catch { return nil }
    }

    /// cel-go's semantics, as kube-apiserver evaluates policies: `has()` on a missing intermediate
    /// field is an error, `true || error` is true, request.namespace of a cluster-scoped request is
    /// absent; and at creation, type errors and a validation that is not a bool are refused.
    @Test func celEvaluatesAndTypeChecksAsKubeAPIServerDoes() throws {
        let api = try KubeAPI()
        let k = try Self.client(api)
        _ = try k.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "cel-a", "labels": ["cel-a": "true"]]])
        _ = try k.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "cel-b", "labels": ["cel-b": "true"]]])
        try Self.policy(k, "has-missing-intermediate", "has(object.spec.template)", namespaceLabel: "cel-a")
        let e = Self.error { try k.create(Self.configMap("x", "cel-a")) }
        #expect(e?.code == 422 && e?.message.contains("resulted in error: no such key: spec") == true, "\(e.map { "\($0)" } ?? "admitted")")
        try Self.policy(k, "true-or-error", "true || has(object.spec.template)", namespaceLabel: "cel-b")
        #expect(Self.error { try k.create(Self.configMap("x", "cel-b")) } == nil, "true || error is true")
        // request.namespace: absent (omitempty) for a cluster-scoped request, present otherwise.
        try Self.policy(k, "namespace-absent", "request.namespace == ''", resources: ["clusterroles"], group: "rbac.authorization.k8s.io")
        let ce = Self.error { try k.create(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": ["name": "c1"], "rules": []]) }
        #expect(ce?.message.contains("no such key: namespace") == true, "\(ce.map { "\($0)" } ?? "admitted")")
        try k.delete(apiVersion: "admissionregistration.k8s.io/v1", kind: "ValidatingAdmissionPolicy", name: "namespace-absent")
        try Self.policy(k, "namespace-optional", "request.?namespace.orValue('') == ''", resources: ["clusterroles"], group: "rbac.authorization.k8s.io")
        #expect(Self.error { try k.create(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": ["name": "c2"], "rules": []]) } == nil)
        // Refused at creation, as validation.go compiles them.
        for (expression, message) in [("'a' + 1 == 2", "found no matching overload for '_+_' applied to '(string, int)'"),
                                       ("object.data.k", "must evaluate to bool but got dyn"),
                                       ("request.nosuch == 'x'", "undefined field 'nosuch'"),
                                       ("params.x == 1", "undeclared reference to 'params.x'")] {
            let e = Self.error { try Self.policy(k, "bad-\(UInt16.random(in: 0...UInt16.max))", expression) }
            #expect(e?.code == 422 && e?.message.contains(message) == true, "\(expression): \(e.map { "\($0)" } ?? "accepted")")
        }
    }

    /// Every built-in kind that makes pods is served and makes them through admission, as
    /// kube-controller-manager's controllers do with their own identities; a status write is
    /// admitted with its subresource, which `resources: ["*"]` does not match.
    @Test func everyPodMakingKindMakesItsPodsThroughAdmission() throws {
        let api = try KubeAPI(controllers: rgw)
        let k = try Self.client(api)
        _ = try k.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "kinds"]])
        try Self.policy(k, "no-refused-pods", "!('refuse' in object.metadata.?labels.orValue({}))", resources: ["pods"])
        let mark = try api.writes().count
        for (gv, kind) in AdmissionPolicyTests.podMakers {
            _ = try k.create(AdmissionPolicyTests.workload(gv, kind, kind.lowercased(), ns: "kinds", labels: ["app": kind.lowercased()]))
        }
        var makers: [String: String] = [:]
        try waitUntil(200, every: 50_000) {
            for w in try api.writes().dropFirst(mark) where w["verb"] as? String == "create" {
                makers["\(w["resource"] ?? "")/\(w["name"] ?? "")"] = w["user"] as? String
            }
            return makers.keys.filter { $0.hasPrefix("pods/") }.count >= 8
        }
        func made(_ prefix: String) -> String? { makers.first { $0.key.hasPrefix(prefix) }?.value }
        #expect(made("pods/replicationcontroller-") == "replication-controller", "\(makers)")
        #expect(made("replicasets/deployment-") == "deployment-controller" && made("pods/deployment-") == "replicaset-controller", "\(makers)")
        #expect(made("pods/replicaset-") == "replicaset-controller" && made("pods/daemonset-") == "daemon-set-controller", "\(makers)")
        #expect(made("pods/statefulset-0") == "statefulset-controller" && made("pods/job-") == "job-controller", "\(makers)")
        #expect(made("jobs/cronjob-") == "cronjob-controller" && made("pods/cronjob-") == "job-controller", "\(makers)")
        #expect(made("pods/pod") == "token-user", "\(makers)")
        // A pod admission refuses is not made, and its owner never becomes available.
        _ = try k.create(AdmissionPolicyTests.workload("apps/v1", "Deployment", "refused", ns: "kinds", labels: ["refuse": "yes"]))
        usleep(2_000_000)
        #expect(try k.list(apiVersion: "v1", kind: "Pod", namespace: "kinds", labelSelector: "refuse").isEmpty)
        let refused = try k.get(apiVersion: "apps/v1", kind: "Deployment", namespace: "kinds", name: "refused")
        #expect((refused?["status"] as? [String: Any])?["availableReplicas"] as? Int ?? 0 == 0, "\(refused ?? [:])")
        // pods/status: `*` does not match it; `pods/status` does.
        try Self.policy(k, "no-marked-main", "!('marked' in object.metadata.?labels.orValue({}))", resources: ["*"])
        var pod = try #require(try k.get(apiVersion: "v1", kind: "Pod", namespace: "kinds", name: "pod"))
        var meta = pod["metadata"] as? [String: Any] ?? [:]
        meta["labels"] = ["app": "pod", "marked": "1"]
        pod["metadata"] = meta
        var (code, _, out) = try api.raw("PUT", "/api/v1/namespaces/kinds/pods/pod/status", body: try Self.json(pod))
        #expect(code == 200, "a status write, which `*` does not match: \(code) \(out)")
        try Self.policy(k, "no-marked-status", "!('marked' in object.metadata.?labels.orValue({}))", resources: ["pods/status"])
        (code, _, out) = try api.raw("PUT", "/api/v1/namespaces/kinds/pods/pod/status", body: try Self.json(pod))
        #expect(code == 422 && out.contains("no-marked-status"), "\(code) \(out)")
    }

    /// A Namespace carries kubernetes.io/metadata.name whatever is sent; deleting one answers
    /// 200 with it Terminating, and 409 Conflict while it is (the registry refuses until its
    /// spec.finalizers are gone); its contents are deleted with their
    /// finalizers honoured (the namespace waits), pods gracefully; nothing new goes in meanwhile.
    @Test func namespacesAndFinalizersAsTheirControllersHandleThem() throws {
        let api = try KubeAPI()
        let k = try Self.client(api)
        _ = try k.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "life", "labels": ["kubernetes.io/metadata.name": "other"]]])
        func labels() throws -> [String: String] {
            ((try k.get(apiVersion: "v1", kind: "Namespace", name: "life")?["metadata"] as? [String: Any])?["labels"] as? [String: String]) ?? [:]
        }
        #expect(try labels()["kubernetes.io/metadata.name"] == "life")
        _ = try k.apply(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "life", "labels": ["team": "a"]]], fieldManager: "x", force: true)
        let after = try labels()
        #expect(after["kubernetes.io/metadata.name"] == "life", "\(after)")
        var held = Self.configMap("held", "life")
        held["metadata"] = ["name": "held", "namespace": "life", "finalizers": ["test.example/hold"]]
        _ = try k.create(held)
        _ = try k.create(AdmissionPolicyTests.workload("v1", "Pod", "p", ns: "life", labels: [:]))
        let (code, _, out) = try api.raw("DELETE", "/api/v1/namespaces/life")
        #expect(code == 200 && out.contains(#""phase": "Terminating""#) && out.contains("deletionTimestamp"), "\(code) \(out)")
        let (again, _, againOut) = try api.raw("DELETE", "/api/v1/namespaces/life")
        #expect(again == 409 && againOut.contains("The system is ensuring all content is removed from this namespace"),
                "a DELETE of a Terminating namespace: \(again) \(againOut)")
        try k.deleteNamespace("life")   // drctl's own delete takes that answer as "already going"
        let late = Self.error { try k.create(Self.configMap("late", "life")) }
        #expect(late?.code == 403 && late?.message.contains("unable to create new content in namespace life because it is being terminated") == true,
                "\(late.map { "\($0)" } ?? "admitted")")
        usleep(1_500_000)
        #expect(try k.get(apiVersion: "v1", kind: "Namespace", name: "life") != nil, "held by the ConfigMap's finalizer")
        let cm = try k.get(apiVersion: "v1", kind: "ConfigMap", namespace: "life", name: "held")
        #expect((cm?["metadata"] as? [String: Any])?["deletionTimestamp"] != nil, "\(cm ?? [:])")
        #expect(try k.get(apiVersion: "v1", kind: "Pod", namespace: "life", name: "p") == nil, "the pod went once stopped")
        _ = try k.apply(["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "held", "namespace": "life", "finalizers": [] as [String]]],
                        fieldManager: "kubectl", force: true)
        #expect(try waitUntil(100, every: 50_000) { try k.get(apiVersion: "v1", kind: "Namespace", name: "life") == nil }, "finalized once empty")
    }

    /// Watches: a label selector sees an object start and stop matching (ADDED, DELETED), a watch
    /// without a resourceVersion starts with the objects that exist, and one from before the
    /// cache's window gets 410 Expired instead of missing events.
    @Test func watchesHonourSelectorsInitialEventsAndTheirWindow() throws {
        let api = try KubeAPI(environment: ["KUBE_TEST_WATCH_WINDOW": "20"])
        let k = try Self.client(api)
        _ = try k.create(Self.configMap("before", "default", labels: ["w": "1"]))
        let rv = ((try k.request("GET", "/api/v1/namespaces/default/configmaps")["metadata"] as? [String: Any])?["resourceVersion"] as? String) ?? "0"
        _ = try k.create(Self.configMap("a", "default", labels: ["w": "1"]))
        _ = try k.create(Self.configMap("b", "default"))
        _ = try k.apply(["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "a", "namespace": "default", "labels": ["w": "2"]]], fieldManager: "kubectl", force: true)
        _ = try k.apply(["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "a", "namespace": "default", "labels": ["w": "1"]]], fieldManager: "kubectl", force: true)
        func seen(from rv: String, selector: String) throws -> [String] {
            var out: [String] = []
            let (code, _, body) = try api.raw("GET", "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1&labelSelector=\(selector)&resourceVersion=\(rv)")
            #expect(code == 200, "\(body)")
            for line in body.split(separator: "\n") {
                guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let type = o["type"] as? String else { continue }
                out.append("\(type) \(((o["object"] as? [String: Any])?["metadata"] as? [String: Any])?["name"] as? String ?? "")")
            }
            return out
        }
        #expect(try seen(from: rv, selector: "w%3D1") == ["ADDED a", "DELETED a", "ADDED a"], "from the list's version, with the selector")
        #expect(try seen(from: "", selector: "w%3D1") == ["ADDED a", "ADDED before"], "no resourceVersion: the objects that exist first")
        for i in 0..<30 { _ = try k.create(Self.configMap("fill-\(i)", "default")) }
        let gone = try seen(from: rv, selector: "w%3D1")
        #expect(gone.count == 1 && gone[0].hasPrefix("ERROR"), "a version the window no longer holds: \(gone)")
        let (_, _, body) = try api.raw("GET", "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1&resourceVersion=\(rv)")
        #expect(body.contains(#""code": 410"#) && body.contains("too old resource version"), "\(body)")
    }

    /// Pod Security admission enforces a namespace's level on every pod, a controller's too; the
    /// workload itself is admitted.
    @Test func podSecurityIsEnforcedOnPods() throws {
        let api = try KubeAPI(controllers: rgw)
        let k = try Self.client(api)
        _ = try k.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "sealed", "labels": ["pod-security.kubernetes.io/enforce": "baseline"]]])
        _ = try k.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "open"]])
        func privileged(_ name: String, _ ns: String) -> [String: Any] {
            ["apiVersion": "v1", "kind": "Pod", "metadata": ["name": name, "namespace": ns],
             "spec": ["hostNetwork": true, "containers": [["name": "c", "image": "busybox", "securityContext": ["privileged": true]]]]]
        }
        let e = Self.error { try k.create(privileged("p", "sealed")) }
        #expect(e?.code == 403 && e?.message.contains(#"violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), privileged (container "c" must not set securityContext.privileged=true)"#) == true,
                "\(e.map { "\($0)" } ?? "admitted")")
        #expect(Self.error { try k.create(privileged("p", "open")) } == nil, "no level: privileged")
        var d = AdmissionPolicyTests.workload("apps/v1", "Deployment", "priv", ns: "sealed", labels: ["app": "priv"])
        var spec = d["spec"] as? [String: Any] ?? [:]
        spec["template"] = ["metadata": ["labels": ["app": "priv"]], "spec": (privileged("x", "sealed")["spec"])!]
        d["spec"] = spec
        #expect(Self.error { try k.create(d) } == nil, "the Deployment is admitted")
        usleep(1_500_000)
        #expect(try k.list(apiVersion: "v1", kind: "Pod", namespace: "sealed").isEmpty, "its pods are not")
    }

    /// Names are checked by each kind's rule; an unknown field is a warning, or refused under
    /// fieldValidation=Strict, and always refused in a server-side apply; a wrong type never decodes.
    @Test func builtInKindsAreValidated() throws {
        let api = try KubeAPI()
        let k = try Self.client(api)
        for (object, message) in [
            (["apiVersion": "v1", "kind": "Service", "metadata": ["name": "1svc", "namespace": "default"]], "a DNS-1035 label must consist of"),
            (["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "a.b"]], "a lowercase RFC 1123 label must consist of"),
            (["apiVersion": "batch/v1", "kind": "CronJob", "metadata": ["name": String(repeating: "c", count: 53), "namespace": "default"]], "must be no more than 52 characters"),
            (["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "Upper", "namespace": "default"]], "a lowercase RFC 1123 subdomain must consist of"),
        ] as [([String: Any], String)] {
            let e = Self.error { try k.create(object) }
            #expect(e?.code == 422 && e?.causes.contains { $0.contains(message) } == true, "\(object["kind"] ?? ""): \(e.map { "\($0)" } ?? "admitted")")
        }
        // RBAC names are path segments: a dot is fine, a slash is not.
        #expect(Self.error { try k.create(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": ["name": "system:a.b"], "rules": []]) } == nil)
        let slash = try api.raw("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                                body: try Self.json(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": ["name": "a%b"], "rules": []]))
        #expect(slash.0 == 422 && slash.2.contains("may not contain '%'"), "\(slash)")
        let unknown = try Self.json(["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "u", "namespace": "default"], "data": ["k": "v"], "spec": ["x": 1]])
        var (code, warnings, out) = try api.raw("POST", "/api/v1/namespaces/default/configmaps", body: unknown)
        #expect(code == 201 && warnings.contains { $0.contains(#"unknown field \"spec\""#) }, "Warn by default: \(code) \(warnings) \(out)")
        (code, _, out) = try api.raw("POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", body: unknown)
        #expect(code == 400 && out.contains(#"ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"spec\""#), "\(code) \(out)")
        (code, _, out) = try api.raw("PATCH", "/api/v1/namespaces/default/configmaps/u2?fieldManager=x", body: unknown, contentType: "application/apply-patch+yaml")
        #expect(code == 500 && out.contains("field not declared in schema"), "\(code) \(out)")
        (code, _, out) = try api.raw("POST", "/apis/apps/v1/namespaces/default/deployments",
                                     body: try Self.json(["apiVersion": "apps/v1", "kind": "Deployment", "metadata": ["name": "t", "namespace": "default"], "spec": ["replicas": "two"]]))
        #expect(code == 400 && out.contains("cannot be handled as a Deployment"), "\(code) \(out)")
    }
}

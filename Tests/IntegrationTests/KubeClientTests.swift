import Foundation
import Testing
import Kube
import TestSupport

/// drctl's Kubernetes client against the test API server (Tests/KubeAPIServer): every way of
/// authenticating, Status errors, pagination, selectors and server-side apply.
@Suite(.serialized) struct KubeClientTests {
    let api: KubeAPI
    init() throws { api = try KubeAPI() }

    func client(_ mode: String) throws -> KubeClient {
        try KubeClient(config: KubeConfig.resolve(kubeconfig: api.kubeconfig(mode), context: nil, namespace: nil))
    }

    @Test(arguments: ["cert", "cert-files", "token", "exec"])
    func eachKubeconfigModeReachesTheServer(_ mode: String) throws {
        let names = try client(mode).list(apiVersion: "v1", kind: "Namespace").compactMap { ($0["metadata"] as? [String: Any])?["name"] as? String }
        #expect(names.contains("default"), "\(mode): \(names)")
        if mode == "exec" {
            let info = try String(contentsOfFile: api.file("exec-info"), encoding: .utf8)
            #expect(info.contains("\"kind\":\"ExecCredential\"") && info.contains(api.server), "\(info)")
        }
    }

    @Test func inClusterServiceAccount() throws {
        let sa = api.file("serviceaccount")
        try FileManager.default.createDirectory(atPath: sa, withIntermediateDirectories: true)
        try api.token.write(toFile: sa + "/token", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: api.file("ca.pem"), toPath: sa + "/ca.crt")
        try "drctl".write(toFile: sa + "/namespace", atomically: true, encoding: .utf8)
        let env = ["KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": String(api.port), "HOME": api.file("nohome")]
        let config = try KubeConfig.resolve(kubeconfig: nil, context: nil, namespace: nil, environment: env, serviceAccountDirectory: sa)
        #expect(config.namespace == "drctl" && config.source == "in-cluster service account")
        let c = try KubeClient(config: config)
        #expect(try c.get(apiVersion: "v1", kind: "Namespace", name: "default") != nil)
        // The token is read again for each request: a rotated token is used at once.
        try "rotated-and-unknown".write(toFile: sa + "/token", atomically: true, encoding: .utf8)
        #expect(throws: KubeError.self) { try c.get(apiVersion: "v1", kind: "Namespace", name: "default") }
    }

    @Test func tlsVerificationFailureIsClear() throws {
        let c = try KubeClient(config: KubeConfig.resolve(kubeconfig: api.kubeconfig("token", ca: false), context: nil, namespace: nil))
        do {
            _ = try c.list(apiVersion: "v1", kind: "Namespace")
            Issue.record("an unknown CA was accepted")
        } catch {
            #expect("\(error)".contains("cannot reach the API server") && "\(error)".lowercased().contains("certificate"), "\(error)")
        }
    }

    @Test func statusErrorsPaginationAndSelectors() throws {
        let c = try client("token")
        func cm(_ name: String, _ labels: [String: String] = [:], data: [String: String] = ["k": "v"]) -> [String: Any] {
            ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": name, "namespace": "default", "labels": labels], "data": data]
        }
        for i in 0..<7 { _ = try c.create(cm("page-\(i)", i % 2 == 0 ? ["drctl.dev/drill": "true"] : [:])) }
        #expect(try c.list(apiVersion: "v1", kind: "ConfigMap", namespace: "default", pageSize: 3).count == 7)
        #expect(try c.list(apiVersion: "v1", kind: "ConfigMap", namespace: "default", labelSelector: "drctl.dev/drill=true", pageSize: 2).count == 4)
        do { _ = try c.create(cm("page-0")); Issue.record("created twice") } catch let e as KubeError {
            #expect(e.code == 409 && e.reason == "AlreadyExists", "\(e)")
        }
        do { _ = try c.create(cm("Not_A_Name")); Issue.record("invalid name accepted") } catch let e as KubeError {
            #expect(e.code == 422 && e.reason == "Invalid" && e.causes.contains { $0.hasPrefix("metadata.name") }, "\(e)")
        }
        #expect(try c.get(apiVersion: "v1", kind: "ConfigMap", namespace: "default", name: "missing") == nil)
        do { _ = try c.create(["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "x", "namespace": "nowhere"]]); Issue.record("no namespace") } catch let e as KubeError {
            #expect(e.code == 404 && e.message.contains("nowhere"), "\(e)")
        }
        #expect(try c.serves("velero.io/v1"))
        #expect(try !c.serves("example.com/v1"))
    }

    /// Custom resources are held to their CRD's schema, strictly, on create and on apply.
    @Test func customResourcesAreValidatedAgainstTheirCRDs() throws {
        guard referenceDirectory("crds") != nil else { print("SKIP: ../shared/reference/crds not found: the test server validates no schemas"); return }
        let c = try client("token")
        func schedule(_ name: String, _ spec: [String: Any]) -> [String: Any] {
            ["apiVersion": "velero.io/v1", "kind": "Schedule", "metadata": ["name": name, "namespace": "default"], "spec": spec]
        }
        _ = try c.create(schedule("good", ["schedule": "0 1 * * *", "template": ["ttl": "24h0m0s"]]))
        do { _ = try c.create(schedule("misspelt", ["schedul": "0 1 * * *", "template": [:]])); Issue.record("unknown field accepted") } catch let e as KubeError {
            #expect(e.code == 422 && e.causes.contains { $0.contains("schedul") }, "\(e)")
        }
        do { _ = try c.apply(schedule("typed", ["schedule": "0 1 * * *", "paused": "yes", "template": [:]])); Issue.record("wrong type accepted") } catch let e as KubeError {
            #expect(e.code == 422 && e.causes.contains { $0.hasPrefix("spec.paused") }, "\(e)")
        }
    }

    @Test func serverSideApplyOwnsFieldsAndReportsConflicts() throws {
        let c = try client("cert")
        let desired: [String: Any] = ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "applied", "namespace": "default"], "data": ["a": "1", "b": "2"]]
        let first = try c.apply(desired)
        let rv = (first["metadata"] as? [String: Any])?["resourceVersion"] as? String
        let again = try c.apply(desired)
        #expect((again["metadata"] as? [String: Any])?["resourceVersion"] as? String == rv, "re-applying the same object changes nothing")
        // Dry run reports the result without storing it.
        var changed = desired
        changed["data"] = ["a": "1", "b": "3"]
        let dry = try c.apply(changed, dryRun: true)
        #expect((dry["data"] as? [String: String])?["b"] == "3")
        #expect((try c.get(apiVersion: "v1", kind: "ConfigMap", namespace: "default", name: "applied")?["data"] as? [String: String])?["b"] == "2")
        // Another manager takes data.b (forcing, as kubectl apply --force-conflicts does): drctl's
        // different value is now a conflict, named; force takes it back.
        _ = try c.apply(changed, fieldManager: "kubectl-edit", force: true)
        do {
            _ = try c.apply(desired)
            Issue.record("conflict not reported")
        } catch let e as KubeError {
            #expect(e.code == 409 && e.description.contains("conflict with \"kubectl-edit\"") && e.description.contains(".data.b"), "\(e)")
        }
        let forced = try c.apply(desired, force: true)
        #expect((forced["data"] as? [String: String])?["b"] == "2")
    }

    /// A body sent as application/apply-patch+yaml, as it is: (status, Warning headers, body).
    func rawApply(_ body: [UInt8], name: String, query: String = "") throws -> (Int, [String], String) {
        try api.raw("PATCH", "/api/v1/namespaces/default/configmaps/\(name)?fieldManager=test\(query)", body: body, contentType: "application/apply-patch+yaml")
    }

    /// Apply bodies are read as kube-apiserver reads them (Tests/KubeAPIServer/goyaml.py: go-yaml
    /// v2 through sigs.k8s.io/yaml), not as JSON: what it refuses, the test server refuses too,
    /// with its message; and drctl's own apply bodies are read.
    @Test func applyBodiesAreReadAsTheAPIServerReadsThem() throws {
        func body(_ name: String, _ data: String) -> [UInt8] {
            Array(#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"\#(name)","namespace":"default"},"data":\#(data)}"#.utf8)
        }
        func refused(_ name: String, _ data: String, _ message: String, query: String = "") throws {
            let (code, _, out) = try rawApply(body(name, data), name: name, query: query)
            #expect(code == 400 && out.contains(#""reason": "BadRequest""#) && out.contains(message), "\(name): \(code) \(out)")
            #expect(try client("token").get(apiVersion: "v1", kind: "ConfigMap", namespace: "default", name: name) == nil, "\(name) was not stored")
        }
        // JSON's escaped slash, which Foundation writes for every "/": YAML 1.1 has no such escape.
        try refused("slash", #"{"url":"https:\/\/example.org"}"#, "error decoding YAML: error converting YAML to JSON: yaml: found unknown escape character")
        // A character beyond the BMP as a JSON surrogate pair.
        try refused("surrogates", #"{"smile":"\ud83d\ude00"}"#, "yaml: found invalid Unicode character escape code")
        // Characters JSON carries raw and YAML does not allow: DEL, a C1 control.
        try refused("del", "{\"a\":\"x\u{7F}y\"}", "yaml: control characters are not allowed")
        try refused("c1", "{\"a\":\"x\u{9F}y\"}", "yaml: control characters are not allowed")
        // A key over 1024 characters, or one whose ':' is on the next line, is no key to YAML.
        try refused("longkey", #"{"\#(String(repeating: "k", count: 1023))":"v"}"#, "did not find expected ',' or '}'")
        try refused("brokenkey", "{\"a\"\n:\"v\"}", "yaml: line 1: did not find expected ',' or '}'")
        // A duplicate key: the last value wins, with a warning by default (fieldValidation Warn);
        // refused under Strict.
        try refused("dupstrict", #"{"a":"1","a":"2"}"#, #"error strict decoding YAML: error converting YAML to JSON: yaml: unmarshal errors:\n  line 1: key \"a\" already set in map"#,
                    query: "&fieldValidation=Strict")
        let (code, warnings, _) = try rawApply(body("dup", #"{"a":"1","a":"2"}"#), name: "dup")
        #expect(code == 201 && warnings.contains { $0.contains(#"line 1: key \"a\" already set in map"#) }, "\(code) \(warnings)")
        #expect((try client("token").get(apiVersion: "v1", kind: "ConfigMap", namespace: "default", name: "dup")?["data"] as? [String: String]) == ["a": "2"])
        // A line break in a quoted scalar folds into a space; NEL is a line break to YAML.
        _ = try rawApply(body("nel", "{\"a\":\"x\u{85}y\"}"), name: "nel")
        #expect((try client("token").get(apiVersion: "v1", kind: "ConfigMap", namespace: "default", name: "nel")?["data"] as? [String: String]) == ["a": "x y"])
        // readerc.go: invalid UTF-8 is refused; a byte order mark at the start is skipped.
        var broken = body("badutf8", #"{"a":"x"}"#)
        broken.insert(0xC3, at: broken.count - 4)
        let (bc, _, bout) = try rawApply(broken, name: "badutf8")
        #expect(bc == 400 && bout.contains("yaml: invalid leading UTF-8 octet"), "\(bc) \(bout)")
        let (mc, _, mout) = try rawApply([0xEF, 0xBB, 0xBF] + body("bom", #"{"a":"x"}"#), name: "bom")
        #expect(mc == 201, "a leading BOM is skipped: \(mc) \(mout)")
        // scannerc.go: nesting deeper than 10000 levels; a tab before the top-level value.
        try refused("deep", String(repeating: "[", count: 10_001) + String(repeating: "]", count: 10_001), "exceeded max depth of 10000")
        let (tc, _, tout) = try rawApply(Array("\t".utf8) + body("tab", #"{"a":"x"}"#), name: "tab")
        #expect(tc == 400 && tout.contains("found character that cannot start any token"), "\(tc) \(tout)")
        // A tab between tokens inside {} is white space.
        let (ic, _, iout) = try rawApply(body("innertab", "{\t\"a\":\t\"x\"}"), name: "innertab")
        #expect(ic == 201, "\(ic) \(iout)")
        // What drctl sends is read, slashes, controls and all.
        let odd = "https://example.org/a \u{7F}\u{9F}\u{1F600}"
        _ = try client("token").apply(["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "drctl-body", "namespace": "default",
                                                                                          "labels": ["app.kubernetes.io/name": "drctl"]], "data": ["u": odd]])
        let stored = try client("token").get(apiVersion: "v1", kind: "ConfigMap", namespace: "default", name: "drctl-body")
        #expect((stored?["data"] as? [String: String])?["u"] == odd && ((stored?["metadata"] as? [String: Any])?["labels"] as? [String: String])?["app.kubernetes.io/name"] == "drctl")
    }

    @Test func watchSeesChangesResumesAndRelistsAfterExpiry() throws {
        let c = try client("token")
        func cm(_ v: String) -> [String: Any] {
            ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "watched", "namespace": "default"], "data": ["v": v]]
        }
        _ = try c.apply(cm("1"))
        // Another writer changes it half a second from now; waitFor sees it through the watch.
        Thread.detachNewThread {
            usleep(500_000)
            _ = try? c.apply(["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "watched", "namespace": "default"], "data": ["v": "2"]],
                             fieldManager: "other", force: true)
        }
        let t0 = Date()
        let seen = try c.waitFor(apiVersion: "v1", kind: "ConfigMap", namespace: "default", name: "watched", deadline: Date().addingTimeInterval(15)) {
            ($0?["data"] as? [String: String])?["v"] == "2"
        }
        #expect((seen?["data"] as? [String: String])?["v"] == "2" && Date().timeIntervalSince(t0) < 5)

        // Resuming from a resourceVersion delivers only what came after it.
        let rv = try #require((seen?["metadata"] as? [String: Any])?["resourceVersion"] as? String)
        _ = try c.apply(cm("3"), force: true)
        var events: [String] = []
        try c.watch(apiVersion: "v1", kind: "ConfigMap", namespace: "default", name: "watched", resourceVersion: rv, timeout: 5) { e in
            events.append("\(e.type) \((e.object["data"] as? [String: String])?["v"] ?? "")")
            return true
        }
        #expect(events == ["MODIFIED 3"], "\(events)")

        // After compaction an old resourceVersion is 410 Expired; waitFor lists again and carries on.
        _ = try run("/usr/bin/curl", ["-sk", "-X", "POST", "\(api.server)/__compact"])
        do {
            try c.watch(apiVersion: "v1", kind: "ConfigMap", namespace: "default", resourceVersion: rv, timeout: 5) { _ in true }
            Issue.record("a compacted resourceVersion was accepted")
        } catch let e as KubeError {
            #expect(e.code == 410, "\(e)")
        }
        let now = try c.waitFor(apiVersion: "v1", kind: "ConfigMap", namespace: "default", name: "watched", deadline: Date().addingTimeInterval(10)) { $0 != nil }
        #expect((now?["data"] as? [String: String])?["v"] == "3")
    }
}

/// Kubeconfig text that is YAML but not a kubeconfig: errors that name the file and line.
struct KubeConfigParsingTests {
    func message(_ text: String) -> String {
        do { _ = try KubeConfig.parse(text: text, file: "/k/config", context: nil) { _ in nil }; return "" } catch { return "\(error)" }
    }

    @Test func oddYAMLIsAnErrorNotACrash() {
        // A mapping used as a key made Yams' load() trap (found by drctl-fuzz kubeconfig).
        #expect(message("clusters:\n- name: a\n? {x: 1}\n: y\n").contains("/k/config:3: a key that is not a string"))
        #expect(message("a: &x 1\nb: *x\n").contains("no current-context"))   // aliases resolve
        #expect(message("- a\n").contains("no mapping at the top"))
        #expect(message("a: [\n").contains("not YAML"))
        #expect(message("current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: 'https://h', certificate-authority: ca.crt}}]\n")
            .contains("cannot read certificate-authority /k/ca.crt"))
    }
}

/// Leases on the test server as the API server documents them, and two electors on one Lease.
@Suite(.serialized) struct LeaseServerTests {
    let api: KubeAPI
    init() throws { api = try KubeAPI() }

    func client() throws -> KubeClient {
        try KubeClient(config: KubeConfig.resolve(kubeconfig: api.kubeconfig("token"), context: nil, namespace: nil))
    }

    func put(_ k: KubeClient, rv: String?, renewTime: String = "2026-12-03T10:00:00.000000Z") throws -> [String: Any] {
        var meta: [String: Any] = ["name": "l", "namespace": "default"]
        if let rv { meta["resourceVersion"] = rv }
        let o: [String: Any] = ["apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                                "spec": ["holderIdentity": "x", "leaseDurationSeconds": 15, "renewTime": renewTime]]
        return try k.request("PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/l", body: Array(try JSONSerialization.data(withJSONObject: o)))
    }

    @Test func updatesAreConditionalAndTimesAreMicroTime() throws {
        let k = try client()
        // AllowCreateOnUpdate: a PUT to a missing Lease creates it.
        let created = try put(k, rv: nil)
        let rv = try #require((created["metadata"] as? [String: Any])?["resourceVersion"] as? String)
        // AllowUnconditionalUpdate is false for Leases.
        #expect(throws: KubeError.self) { _ = try put(k, rv: nil) }
        do { _ = try put(k, rv: nil) } catch let e as KubeError { #expect(e.code == 422 && e.message.contains("must be specified for an update"), "\(e)") }
        let updated = try put(k, rv: rv)
        // The resourceVersion it was read at is stale now: 409.
        do { _ = try put(k, rv: rv); Issue.record("a stale resourceVersion was accepted") } catch let e as KubeError { #expect(e.code == 409 && e.message.contains("the object has been modified"), "\(e)") }
        let rv2 = try #require((updated["metadata"] as? [String: Any])?["resourceVersion"] as? String)
        do { _ = try put(k, rv: rv2, renewTime: "2026-12-03T10:00:00Z"); Issue.record("a time without microseconds was accepted") } catch let e as KubeError { #expect(e.code == 400, "\(e)") }
    }

    /// Two electors on one Lease: one leads; the other takes over only once the leader stops
    /// renewing and its lease duration has passed (short timings, as the HA test's are real).
    @Test func twoElectorsHaveOneLeaderAndTheOtherTakesOverOnlyAfterTheLease() throws {
        let timing = LeaseTiming(leaseDuration: 3, renewDeadline: 2, retryPeriod: 0.5)
        let a = LeaderElector(kube: try client(), namespace: "default", name: "ha", identity: "a", timing: timing, log: { _ in })
        let b = LeaderElector(kube: try client(), namespace: "default", name: "ha", identity: "b", timing: timing, log: { _ in })
        #expect(a.tryAcquireOrRenew() && a.isLeader)
        #expect(!b.tryAcquireOrRenew() && !b.isLeader && b.holder == "a" && b.anotherLeads)
        let seen = Date()
        for _ in 0..<4 { usleep(500_000); #expect(a.tryAcquireOrRenew()); #expect(!b.tryAcquireOrRenew()) }
        // a stops renewing: b waits the lease duration from its last sight of a renewal.
        var takenAfter: TimeInterval?
        let lastRenewal = Date()
        while Date().timeIntervalSince(seen) < 20 {
            if b.tryAcquireOrRenew() { takenAfter = Date().timeIntervalSince(lastRenewal); break }
            usleep(100_000)
        }
        let after = try #require(takenAfter, "b never took over")
        #expect(after >= 3 - 0.2, "b took the lease \(after) s after a's last renewal")
        #expect(b.isLeader && !a.isLeader, "a's renew deadline has passed too")
        // a, back, may not write over b's lease: its resourceVersion is stale and the record is b's.
        #expect(!a.tryAcquireOrRenew() && !a.isLeader)
    }
}

import Foundation
import Testing
import Kube
import ObjectStore
import Support
import TestSupport

/// Several `drctl serve` replicas electing a leader through a Lease on the Kubernetes API test
/// server (resourceVersion conflicts, deploy/rbac.yaml + rbac-serve.yaml and admission.yaml
/// enforced), running cluster drills of the real archive: the leader killed mid-drill, then the
/// next leader cut off from the API server.
@Suite(.serialized) struct HighAvailabilityTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    static let serviceAccount = "system:serviceaccount:drctl:drctl"
    /// A slot's stamp, 20261203T060000Z, as a time.
    static func slotTime(_ stamp: String) -> Date? {
        let c = Array(stamp)
        guard c.count == 16 else { return nil }
        return RFC3339.parse("\(String(c[0..<4]))-\(String(c[4..<6]))-\(String(c[6..<8]))T\(String(c[9..<11])):\(String(c[11..<13])):\(String(c[13..<15]))Z")
    }

    func object(_ f: ClusterFixture, _ key: String) throws -> String {
        var bytes: [UInt8] = []
        try f.s3.getObject(S3URL(bucket: f.bucket, key: key)) { bytes += $0 }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Every write by one replica (the User-Agent names it), in the server's order, with its time.
    static func writes(_ api: KubeAPI, by replica: String) throws -> [[String: Any]] {
        try api.writes().filter { ($0["userAgent"] as? String)?.contains("(replica \(replica))") == true }
    }

    /// Whether replica `name`'s log says it leads (its identity in the Lease is `<name>_<random>`).
    static func leads(_ s: ServeTests.Service, _ name: String) -> Bool {
        s.text().split(separator: "\n").contains { $0.contains("lease drctl/drctl: \(name)_") && $0.hasSuffix(" is the leader") }
    }

    static func leaseHolder(_ admin: KubeClient) throws -> String? {
        ((try admin.get(apiVersion: "coordination.k8s.io/v1", kind: "Lease", namespace: "drctl", name: "drctl"))?["spec"] as? [String: Any])?["holderIdentity"] as? String
    }

    @Test func aKilledLeaderIsReplacedAndAPartitionedOneStopsFirst() throws {
        try #require(FileManager.default.isExecutableFile(atPath: toolsPython), "no .venv-tools: run scripts/install-deps.sh")
        let deploy = packageRoot.appendingPathComponent("deploy").path
        let work = try testWorkDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        // drctl's RBAC as deployed: the drills' and serve's own (its Lease).
        let rbac = work + "/rbac.yaml"
        try (String(contentsOfFile: deploy + "/rbac.yaml", encoding: .utf8) + "\n---\n" + String(contentsOfFile: deploy + "/rbac-serve.yaml", encoding: .utf8))
            .write(toFile: rbac, atomically: true, encoding: .utf8)
        let tokens = Dictionary(uniqueKeysWithValues: ["a", "b", "c"].map { ($0, "drctl-test-replica-\($0)-\(UUID().uuidString.prefix(8))") })
        let f = try ClusterFixture(rgw: rgw, bucket: "ha", rbac: rbac, admission: deploy + "/admission.yaml", user: "serviceaccount",
                                   secretName: "backup-s3-credentials", extraTokens: Dictionary(uniqueKeysWithValues: tokens.values.map { ($0, Self.serviceAccount) }))
        // A drill slot every 30 s.
        try f.policy("= 42", schedule: "*/30 * * * * *")
        let before = try f.archive()

        func replica(_ name: String) throws -> ServeTests.Service {
            var env = f.env
            env["DRCTL_DATA_DIR"] = work + "/data-" + name
            return try ServeTests.Service(["--mode", "cluster", "--policies", f.policies, "--kubeconfig", try f.api.kubeconfig(bearer: tokens[name]!, name: name),
                                           "--credentials-namespace", "drctl", "--leader-election", "--replica", name],
                                          env: env, log: work + "/serve-\(name).log")
        }
        func waitFor(_ what: String, _ seconds: Int, _ done: () throws -> Bool) throws {
            let ok = try waitUntil(seconds * 10, every: 100_000, done)
            try #require(ok, "\(what) within \(seconds) s")
        }

        let a = try replica("a")
        try waitFor("a leads", 20) { Self.leads(a, "a") }
        let b = try replica("b")
        try waitFor("b's metrics", 10) { try b.metric("drctl_leader{replica=\"b\"}") == 0 }
        #expect(try a.metric("drctl_leader{replica=\"a\"}") == 1)
        #expect(try b.metric("drctl_rpo_objective_seconds{workload=\"n8n-prod\"}") == nil, "a follower leaves the workload families to the leader")
        #expect(try a.metric("drctl_rpo_objective_seconds{workload=\"n8n-prod\"}") == 86400)
        #expect(try b.get("/readyz").0 == 200, "a follower is ready: it serves the page and the API")

        // a starts a drill (its first scratch namespace); kill -9 it there.
        var slot = ""
        try waitFor("a's drill", 60) {
            for ns in try f.admin.list(apiVersion: "v1", kind: "Namespace", labelSelector: "drctl.dev/drill=true") {
                if let s = ((ns["metadata"] as? [String: Any])?["annotations"] as? [String: String])?["drctl.dev/drill-slot"] { slot = s; return true }
            }
            return false
        }
        kill(a.pid, SIGKILL)
        _ = try reap(a.pid)
        let killedAt = Date().timeIntervalSince1970
        let aLastRenewal = try #require(try Self.writes(f.api, by: "a").last { $0["resource"] as? String == "leases" }?["at"] as? Double)

        try waitFor("b takes over", 25) { Self.leads(b, "b") }
        let bFirstLease = try #require(try Self.writes(f.api, by: "b").first { $0["resource"] as? String == "leases" }?["at"] as? Double)
        // Never before a's lease expired; then at b's next try (its retry period, jittered 1.2×), 3 s of slack for a loaded machine.
        #expect(bFirstLease - aLastRenewal >= 15, "b waited out a's lease: \(bFirstLease - aLastRenewal) s")
        #expect(bFirstLease - aLastRenewal <= 15 + 2 * 1.2 + 3, "b took over \(bFirstLease - aLastRenewal) s after a's last renewal")
        #expect(bFirstLease >= killedAt - 1)
        print("leader a killed \(String(format: "%.1f", killedAt - aLastRenewal)) s after its last renewal; b took the lease \(String(format: "%.1f", bFirstLease - aLastRenewal)) s after it")
        try waitFor("a's scratch namespaces deleted", 60) {
            try f.admin.list(apiVersion: "v1", kind: "Namespace", labelSelector: "drctl.dev/drill=true").allSatisfy {
                ((($0["metadata"] as? [String: Any])?["annotations"] as? [String: String])?["drctl.dev/drill-slot"]) != slot
            }
        }
        #expect(b.text().contains("adopting \(slot) of a_"), "\(b.text())")
        let stamp = String(slot.split(separator: "/").last ?? "")
        let claim = try object(f, "drctl/slots/drill-n8n-prod/\(stamp).json")
        #expect(claim.contains("\"holder\":\"a_"), "\(claim)")
        let end = try object(f, "drctl/slots/drill-n8n-prod/\(stamp).done.json")
        #expect(end.contains("\"result\":\"adopted\""), "\(end)")

        // The slot ran once: b makes no drill namespace for it, only for the next slot.
        let slotTime = try #require(Self.slotTime(stamp))
        try waitFor("b's first drill, of the next slot", 60) {
            try Self.writes(f.api, by: "b").contains { $0["resource"] as? String == "namespaces" && $0["verb"] as? String == "create" }
        }
        let bCreates = try Self.writes(f.api, by: "b").filter { $0["resource"] as? String == "namespaces" && $0["verb"] as? String == "create" }
        #expect(bCreates.allSatisfy { ($0["at"] as? Double ?? 0) >= slotTime.timeIntervalSince1970 + 30 }, "b re-ran a's slot: \(bCreates)")

        // b, now leading (and drilling), is cut off; c is the follower.
        let c = try replica("c")
        try waitFor("c follows", 10) { try c.metric("drctl_leader{replica=\"c\"}") == 0 }
        // Cut b mid-drill: while one of its scratch namespaces exists.
        var bSlot = ""
        try waitFor("b's drill", 60) {
            for ns in try f.admin.list(apiVersion: "v1", kind: "Namespace", labelSelector: "drctl.dev/drill=true") {
                if let s = ((ns["metadata"] as? [String: Any])?["annotations"] as? [String: String])?["drctl.dev/drill-slot"], s != slot { bSlot = s; return true }
            }
            return false
        }
        try f.api.partition(tokens["b"]!, cut: true)
        try waitFor("c takes over", 30) { Self.leads(c, "c") }
        try waitFor("b exits", 10) { kill(b.pid, 0) != 0 || waitpid(b.pid, nil, WNOHANG) == b.pid }
        let cFirstLease = try #require(try Self.writes(f.api, by: "c").first { $0["resource"] as? String == "leases" }?["at"] as? Double)
        let bLastWrite = try #require(try Self.writes(f.api, by: "b").last?["at"] as? Double)
        #expect(bLastWrite < cFirstLease, "b wrote at \(bLastWrite), after c began leading at \(cFirstLease)")
        let stopped = try #require(b.text().split(separator: "\n").first { $0.contains("no longer the leader") }, "\(b.text())")
        let stoppedAt = try #require(RFC3339.parse(String(stopped.prefix(24))))
        print("b cut off; it stopped acting \(String(format: "%.1f", cFirstLease - stoppedAt.timeIntervalSince1970)) s before c took the lease; its last write \(String(format: "%.1f", cFirstLease - bLastWrite)) s before")
        #expect(stoppedAt.timeIntervalSince1970 < cFirstLease, "b stopped at \(stoppedAt), c started at \(cFirstLease)")
        #expect(b.text().contains("leadership lost"), "\(b.text())")
        try f.api.partition(tokens["b"]!, cut: false)

        // c deletes what b's drill left (adopted), SIGTERM tears c's own drill down and hands the lease back.
        try waitFor("c adopts b's drill", 60) { c.text().contains("adopting \(bSlot) of b_") }
        kill(c.pid, SIGTERM)
        _ = try reap(c.pid)
        try waitFor("every scratch namespace gone", 90) { try f.drillNamespaces().isEmpty }
        #expect(try Self.leaseHolder(f.admin) == "", "c released the lease on SIGTERM")

        for (name, r) in [("b", b), ("c", c)] {
            print("replica \(name):\n" + r.text().split(separator: "\n").filter { $0.contains("lease") || $0.contains("adopting") || $0.contains("stopping") || $0.contains("not run again") }.joined(separator: "\n"))
        }
        let after = try f.archive()
        #expect(before.filter { after[$0.key] != $0.value }.isEmpty, "the production archive is unchanged")
        let refused = try f.api.audit().filter { ($0["user"] as? String) == Self.serviceAccount && $0["allowed"] as? Bool != true }
        #expect(refused.isEmpty, "requests drctl's deployed RBAC refuses: \(refused)")
        let outside = try f.api.writesOutsideDrills(since: 0).filter { !$0.hasPrefix("create secrets drctl/") && !$0.contains("by bootstrap") && !$0.contains("by token-user") && !$0.contains("leases drctl/drctl by \(Self.serviceAccount)") }
        #expect(outside.isEmpty, "writes outside drill namespaces besides the Lease: \(outside)")
    }
}

import Foundation
import Testing
import TestSupport
import Yams
@testable import Policy
@testable import Render

/// drctl's own workloads in deploy/ run as non-root with a read-only root filesystem, no
/// privilege escalation and no capabilities, and the image's user is not root.
@Suite struct DeploySecurityTests {
    /// Every pod spec in deploy/*.yaml (Deployments, CronJobs), by file and object.
    static func podSpecs() throws -> [(String, [String: Any])] {
        var out: [(String, [String: Any])] = []
        let dir = packageRoot.appendingPathComponent("deploy")
        for file in try FileManager.default.contentsOfDirectory(atPath: dir.path).filter({ $0.hasSuffix(".yaml") }).sorted() {
            let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
            for case let doc as [String: Any] in try Yams.load_all(yaml: text) {
                let name = "\(file): \(doc["kind"] ?? "?")/\((doc["metadata"] as? [String: Any])?["name"] ?? "?")"
                var spec = doc["spec"] as? [String: Any]
                if doc["kind"] as? String == "CronJob" { spec = (spec?["jobTemplate"] as? [String: Any])?["spec"] as? [String: Any] }
                if let pod = (spec?["template"] as? [String: Any])?["spec"] as? [String: Any] { out.append((name, pod)) }
            }
        }
        return out
    }

    static func check(_ name: String, _ pod: [String: Any]) {
        let psc = pod["securityContext"] as? [String: Any] ?? [:]
        #expect(psc["runAsNonRoot"] as? Bool == true, "\(name): runAsNonRoot")
        if let uid = psc["runAsUser"] as? Int { #expect(uid != 0, "\(name): runAsUser 0") }
        #expect((psc["seccompProfile"] as? [String: Any])?["type"] as? String == "RuntimeDefault", "\(name): seccomp")
        for c in pod["containers"] as? [[String: Any]] ?? [] {
            let sc = c["securityContext"] as? [String: Any] ?? [:]
            #expect(sc["readOnlyRootFilesystem"] as? Bool == true, "\(name) \(c["name"] ?? ""): readOnlyRootFilesystem")
            #expect(sc["allowPrivilegeEscalation"] as? Bool == false, "\(name): allowPrivilegeEscalation")
            #expect((sc["capabilities"] as? [String: Any])?["drop"] as? [String] == ["ALL"], "\(name): capabilities")
            #expect(sc["privileged"] as? Bool != true, "\(name): privileged")
        }
    }

    @Test func drctlsPodsAreNonRootAndReadOnly() throws {
        let pods = try Self.podSpecs()
        #expect(pods.count >= 3, "serve, catalog sync, verify: \(pods.map(\.0))")
        for (name, pod) in pods {
            Self.check(name, pod)
            // Writable places are volumes of their own, never the image.
            let mounts = (pod["containers"] as? [[String: Any]] ?? []).flatMap { $0["volumeMounts"] as? [[String: Any]] ?? [] }
            let writable = mounts.filter { $0["readOnly"] as? Bool != true }.compactMap { $0["mountPath"] as? String }.sorted()
            #expect(writable == ["/tmp", "/var/lib/drctl"], "\(name): writable mounts \(writable)")
        }
    }

    @Test func drillCheckJobsAreNonRootAndReadOnly() {
        let job = DrillManifests.checkJob(name: "drctl-check-db-1", namespace: "drill-x", cluster: "db", psqlArguments: ["-c", "select 1"],
                                          image: DrillManifests.postgresImage(major: 16)) as [String: Any]
        let pod = (((job["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any]) ?? [:]
        #expect(pod["automountServiceAccountToken"] as? Bool == false)
        Self.check("check Job", pod)
    }

    @Test func theImageRunsAsNonRoot() throws {
        let dockerfile = try String(contentsOf: packageRoot.appendingPathComponent("deploy/Dockerfile"), encoding: .utf8)
        let user = try #require(dockerfile.split(separator: "\n").last { $0.hasPrefix("USER ") }, "a USER line")
        let uid = user.dropFirst(5).split(separator: ":").first.map(String.init) ?? ""
        #expect(Int(uid).map { $0 != 0 } ?? (uid != "root"), "USER \(uid)")
    }
}

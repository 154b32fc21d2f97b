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

    static func documents(_ file: String) throws -> [[String: Any]] {
        let text = try String(contentsOf: packageRoot.appendingPathComponent("deploy/\(file)"), encoding: .utf8)
        return try Yams.load_all(yaml: text).compactMap { $0 as? [String: Any] }
    }

    /// drctl serve practises what the user's guide asks of every workload, and shows its data
    /// only to those allowed: a PodDisruptionBudget, bounded scratch space, probes that mean
    /// something, authentication and TLS, a NetworkPolicy on its port; the catalog sync has no
    /// Kubernetes token at all.
    @Test func drctlsDeploymentIsHardened() throws {
        let serve = try Self.documents("serve.yaml")
        let deployment = try #require(serve.first { $0["kind"] as? String == "StatefulSet" })
        let pod = try #require((((deployment["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"]) as? [String: Any])
        let container = try #require((pod["containers"] as? [[String: Any]])?.first)
        let args = container["args"] as? [String] ?? []
        #expect(args.contains("--auth") && args[args.firstIndex(of: "--auth")! + 1] == "kubernetes", "\(args)")
        #expect(args.contains("--tls-cert") && args.contains("--tls-key"), "\(args)")
        let requests = (container["resources"] as? [String: Any])?["requests"] as? [String: Any] ?? [:]
        let tmp = (pod["volumes"] as? [[String: Any]])?.first { $0["name"] as? String == "tmp" }
        let sizeLimit = (tmp?["emptyDir"] as? [String: Any])?["sizeLimit"] as? String
        #expect(sizeLimit != nil, "the scratch emptyDir has a sizeLimit")
        // The scheduler guarantees the request, not the limit: less than the emptyDir may hold
        // puts drctl on a node that evicts it mid-drill.
        #expect(requests["ephemeral-storage"] as? String == sizeLimit, "the ephemeral-storage request is the scratch emptyDir's sizeLimit: \(requests)")
        for probe in ["livenessProbe", "readinessProbe"] {
            let get = (container[probe] as? [String: Any])?["httpGet"] as? [String: Any]
            #expect(get?["scheme"] as? String == "HTTPS", "\(probe) over the TLS port")
        }
        // Not a single point of failure: two replicas, never on one node, one of them always up,
        // electing their leader (the Lease's RBAC in drctl's namespace only).
        let spec = try #require(deployment["spec"] as? [String: Any])
        #expect(spec["replicas"] as? Int == 2)
        #expect(args.contains("--leader-election"), "\(args)")
        let anti = ((pod["affinity"] as? [String: Any])?["podAntiAffinity"] as? [String: Any])?["requiredDuringSchedulingIgnoredDuringExecution"] as? [[String: Any]]
        #expect(anti?.first?["topologyKey"] as? String == "kubernetes.io/hostname", "required anti-affinity over nodes")
        let pdb = try #require(serve.first { $0["kind"] as? String == "PodDisruptionBudget" }, "a PodDisruptionBudget")
        #expect((pdb["spec"] as? [String: Any])?["minAvailable"] as? Int == 1)
        let leaseRoles = try Self.documents("rbac-serve.yaml").filter { d in
            ((d["rules"] as? [[String: Any]]) ?? []).contains { ($0["resources"] as? [String])?.contains("leases") == true }
        }
        #expect(leaseRoles.count == 1 && leaseRoles.allSatisfy { $0["kind"] as? String == "Role" && ($0["metadata"] as? [String: Any])?["namespace"] as? String == "drctl" },
                "Leases granted by one Role in drctl's namespace: \(leaseRoles)")
        let network = try Self.documents("network.yaml")
        let np = try #require(network.first { $0["kind"] as? String == "NetworkPolicy" })
        #expect(((np["spec"] as? [String: Any])?["policyTypes"] as? [String])?.contains("Ingress") == true)
        let sync = try #require(try Self.documents("cronjobs.yaml").first { ($0["metadata"] as? [String: Any])?["name"] as? String == "drctl-catalog-sync" })
        let syncPod = (((((sync["spec"] as? [String: Any])?["jobTemplate"] as? [String: Any])?["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"]) as? [String: Any]
        #expect(syncPod?["automountServiceAccountToken"] as? Bool == false, "the catalog sync mounts no token")
        let kustomization = try String(contentsOf: packageRoot.appendingPathComponent("deploy/kustomization.yaml"), encoding: .utf8)
        for f in ["rbac.yaml", "rbac-serve.yaml", "admission.yaml", "network.yaml"] { #expect(kustomization.contains("- \(f)"), "\(f) deployed") }
    }
}

import Foundation
import Testing
import Yams
import TestSupport
@testable import Layout
@testable import Policy
@testable import Render

/// What keeps a cluster drill's Velero Restore inside its scratch namespaces, read as Velero
/// reads it: `*` and globs in includedNamespaces select namespaces, namespaceMapping keys are
/// literal, unset includeClusterResources restores cluster-scoped objects.
@Suite struct DrillIsolationTests {
    /// A workload with a drill of `podsReady` and these more lines of `spec.drill`, loaded from `dir`.
    static func loadDrill(in dir: String, _ drillLines: String) -> (PolicySet, Diagnostics) {
        try? """
            apiVersion: drctl.dev/v1alpha1
            kind: ObjectStore
            metadata: {name: s}
            spec: {endpoint: "http://127.0.0.1:1", bucket: b, credentials: {secretName: c}}
            ---
            apiVersion: drctl.dev/v1alpha1
            kind: BackupPolicy
            metadata: {name: w}
            spec:
              objectStore: s
              namespaces: [w]
              objectives: {rpo: 1h, rto: 1h}
              velero: {volumes: none, schedules: [{tier: daily, schedule: "0 1 * * *", retention: 7d}]}
              drill:
                schedule: "0 6 * * *"
                checks: [{podsReady: {}}]

            """.appending(drillLines + "\n").write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let diags = Diagnostics()
        return (PolicyLoader.load(paths: [dir], diagnostics: diags), diags)
    }

    let backup: Set<String> = ["n8n-prod", "keycloak", "kube-system", "drctl", "drill-n8n-prod-20261101060000-ab12"]

    @Test func wildcardsExpandFromTheBackupAndEachSourceGetsItsOwnScratchNamespace() throws {
        let sources = try DrillIsolation.sourceNamespaces(policy: ["*"], backup: backup)
        #expect(sources == ["drctl", "keycloak", "kube-system", "n8n-prod"], "drill namespaces a backup caught are left out: \(sources)")
        #expect(try DrillIsolation.sourceNamespaces(policy: ["n8n-*", "keycloak"], backup: backup) == ["n8n-prod", "keycloak"])
        #expect(try DrillIsolation.sourceNamespaces(policy: ["ns[12]", "n8n-pro?"], backup: backup) == ["n8n-prod"])
        #expect(throws: DrillIsolation.PlanError.self) { try DrillIsolation.sourceNamespaces(policy: ["*"], backup: nil) }
        #expect(throws: DrillIsolation.PlanError.self) { try DrillIsolation.sourceNamespaces(policy: ["nothing-*"], backup: backup) }

        let names = DrillIsolation.scratchNames(workload: "cluster", at: Date(timeIntervalSince1970: 0), suffix: "beef", count: sources.count)
        #expect(Set(names).count == sources.count && names.allSatisfy { $0.hasPrefix("drill-cluster-19700101000000-beef") && $0.count <= 63 }, "\(names)")
        let mappings = zip(sources, names).map { DrillIsolation.Mapping(source: $0, scratch: $1) }
        try DrillIsolation.validate(mappings)

        let restore = DrillIsolation.veleroRestore(name: names[0], backup: "b", mappings: mappings, veleroNamespace: "velero", modifiers: "m")
        let spec = try #require(restore["spec"] as? [String: any Sendable])
        let included = try #require(spec["includedNamespaces"] as? [String])
        let mapping = try #require(spec["namespaceMapping"] as? [String: String])
        #expect(!included.contains { VeleroNamespaces.isPattern($0) }, "Velero would restore every namespace a pattern matches into its own name")
        #expect(included.allSatisfy { mapping[$0]?.hasPrefix("drill-") == true }, "every included namespace is mapped: \(mapping)")
        #expect(spec["includeClusterResources"] as? Bool == false, "unset restores the backup's cluster-scoped objects")
        let excluded = try #require(spec["excludedResources"] as? [String])
        for r in ["clusters.postgresql.cnpg.io", "scheduledbackups.postgresql.cnpg.io", "backups.postgresql.cnpg.io", "poolers.postgresql.cnpg.io",
                  "objectstores.barmancloud.cnpg.io"] { #expect(excluded.contains(r), "\(r)") }
        let expressions = ((spec["labelSelector"] as? [String: any Sendable])?["matchExpressions"] as? [[String: any Sendable]]) ?? []
        #expect(expressions.contains { $0["key"] as? String == "cnpg.io/cluster" && $0["operator"] as? String == "DoesNotExist" })
        #expect((spec["resourceModifier"] as? [String: String]) == ["kind": "ConfigMap", "name": "m"])
    }

    @Test func mappingsThatCouldWriteOutsideTheDrillAreRefused() {
        func refused(_ m: [(String, String)]) -> Bool {
            (try? DrillIsolation.validate(m.map { DrillIsolation.Mapping(source: $0.0, scratch: $0.1) })) == nil
        }
        #expect(refused([("*", "drill-x-1")]), "a literal `*` key maps nothing")
        #expect(refused([("app-*", "drill-x-1")]))
        #expect(refused([("n8n-prod", "n8n-prod-copy")]), "not a drill namespace")
        #expect(refused([("a", "drill-x-1"), ("b", "drill-x-1")]), "two sources into one namespace collide")
        #expect(refused([("drill-x-1", "drill-x-2"), ("b", "drill-x-1")]), "a target that is also a source")
        #expect(refused([]))
        #expect(!refused([("a", "drill-x-1"), ("b", "drill-x-2")]))
    }

    @Test func theSealSuspendsCronJobsAndDeniesTrafficByDefault() throws {
        let modifier = BackupPolicy.Modifier(groupResource: "deployments.apps", resourceNameRegex: "^n8n$", matchLabels: [:],
                                             patches: [.init(operation: "replace", path: "/spec/replicas", value: "0", from: nil)])
        let cm = try DrillIsolation.modifiersConfigMap(workload: "n8n-prod", veleroNamespace: "velero", rules: DrillIsolation.modifierRules([modifier]))
        let text = try #require((cm["data"] as? [String: String])?["modifiers.yaml"])
        let doc = try #require(try Yams.load(yaml: text) as? [String: Any])
        #expect(doc["version"] as? String == "v1")
        let rules = try #require(doc["resourceModifierRules"] as? [[String: Any]])
        #expect(rules.count == 2)
        #expect((rules[0]["conditions"] as? [String: Any])?["groupResource"] as? String == "cronjobs.batch")
        #expect((rules[0]["patches"] as? [[String: Any]])?.first?["path"] as? String == "/spec/suspend")
        #expect((rules[1]["conditions"] as? [String: Any])?["resourceNameRegex"] as? String == "^n8n$")

        let api = DrillIsolation.APIServer.from(endpointSlice: [
            "addressType": "IPv4", "ports": [["name": "https", "port": 6443, "protocol": "TCP"]],
            "endpoints": [["addresses": ["10.0.0.5"], "conditions": ["ready": true]], ["addresses": ["10.0.0.6"], "conditions": ["ready": false]]],
        ])
        #expect(api == DrillIsolation.APIServer(addresses: ["10.0.0.5"], ports: [6443]), "ready endpoints only")
        let egress = DrillIsolation.Egress(endpoint: "http://rook-ceph-rgw-ceph-objectstore.rook-ceph.svc:80", apiServer: api)
        let policies = DrillIsolation.networkPolicies(namespace: "drill-x", drctlNamespace: "drctl", cnpgNamespace: "cnpg-system", clusters: ["app-db"], egress: egress)
        let seal = try #require(policies.first)
        let spec = try #require(seal["spec"] as? [String: any Sendable])
        #expect((spec["podSelector"] as? [String: any Sendable])?.isEmpty == true, "every pod of the namespace")
        #expect(spec["policyTypes"] as? [String] == ["Ingress", "Egress"])
        let egressRules = try #require(spec["egress"] as? [[String: any Sendable]])
        #expect(egressRules.count == 2 && egressRules.allSatisfy { $0["to"] != nil }, "no rule without a peer (that would allow everything)")
        #expect(egress.summary == "namespace rook-ceph", "after the DNAT the pod port is matched (8080 behind 80): any port of that namespace")
        #expect(DrillIsolation.Egress(endpoint: "https://10.0.0.7:7480", apiServer: api).summary == "10.0.0.7 port 7480")
        let recovery = try #require(policies.last?["spec"] as? [String: any Sendable])
        #expect((recovery["podSelector"] as? [String: any Sendable]).map { "\($0)" }?.contains("app-db") == true)
        // The recovery pods reach the API server's endpoints and nothing else: every egress rule names its peers.
        let recoveryEgress = try #require(recovery["egress"] as? [[String: any Sendable]])
        #expect(recoveryEgress.allSatisfy { ($0["to"] as? [[String: any Sendable]])?.isEmpty == false }, "\(recoveryEgress)")
        let toAPI = try #require(recoveryEgress.last)
        #expect("\(toAPI["to"] ?? "")".contains("10.0.0.5/32") && (toAPI["ports"] as? [[String: any Sendable]])?.compactMap { $0["port"] as? Int } == [6443],
                "\(toAPI)")
        let summary = DrillIsolation.sealSummary(mappings: [.init(source: "a", scratch: "drill-a")], clusters: ["app-db"], egress: egress, modifiers: 0)
        #expect(summary.contains { $0.contains("the API server (10.0.0.5:6443)") }, "\(summary)")
    }

    @Test func drillModifiersAreReadFromThePolicyAndCheckedThere() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-modifiers-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func load(_ modifiers: String) -> (PolicySet, Diagnostics) { Self.loadDrill(in: dir, "    modifiers:\n" + modifiers) }
        var (set, diags) = load("""
                  - conditions: {groupResource: deployments.apps, resourceNameRegex: "^n8n$"}
                    patches: [{operation: replace, path: /spec/replicas, value: "0"}]
            """)
        #expect(!diags.hasErrors, "\(diags.all)")
        #expect(set.backupPolicies.first?.drill?.modifiers.first?.patches.first?.value == "0")
        (set, diags) = load("""
                  - conditions: {groupResource: deployments.apps}
                    patches: [{operation: replce, path: spec/replicas}]
            """)
        let text = diags.all.map(\.description).joined(separator: "\n")
        #expect(text.contains("'replce' is not one of") && text.contains("is not a JSON pointer"), "\(text)")
    }

    /// A recovered server preloads no library the backup names, only those the policy allows,
    /// by name (a path would load any file on the host).
    @Test func preloadLibrariesAreNamesFromThePolicy() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-preload-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func load(_ names: String) -> (PolicySet, String) {
            let (set, diags) = Self.loadDrill(in: dir, "    preloadLibraries: \(names)")
            return (set, diags.all.map(\.description).joined(separator: "\n"))
        }
        let (set, clean) = load("[pg_stat_statements, timescaledb]")
        #expect(clean.isEmpty, "\(clean)")
        #expect(set.backupPolicies.first?.drill?.preloadLibraries == ["pg_stat_statements", "timescaledb"])
        for bad in ["['/tmp/evil.so']", "['a,b']", "['$libdir/x']", "[\"\"]"] {
            let (_, text) = load(bad)
            #expect(text.contains("spec.drill.preloadLibraries[]") && text.contains("is not a library name"), "\(bad): \(text)")
        }

        let shipped = DrillManifestTests.policySet()
        var p = try #require(shipped.backupPolicies.first { !$0.cnpg.isEmpty })
        let store = try #require(shipped.objectStore(named: p.objectStore.value))
        func preload(_ p: BackupPolicy) -> [String]? {
            let cluster = DrillManifests.recoveryCluster(policy: p, cluster: p.cnpg[0], store: store, namespace: "drill-x", targetTime: nil).first { $0["kind"] as? String == "Cluster" }
            return ((cluster?["spec"] as? [String: any Sendable])?["postgresql"] as? [String: any Sendable])?["shared_preload_libraries"] as? [String]
        }
        #expect(preload(p) == nil, "nothing by default")
        p.drill?.preloadLibraries = ["pg_stat_statements"]
        #expect(preload(p) == ["pg_stat_statements"])
    }

    @Test func backupsSkipTheDataOfCNPGVolumes() throws {
        let set = DrillManifestTests.policySet()
        let files = Renderer.render(set, policyFiles: [], options: RenderOptions())
        let policy = try #require(files.first { $0.path == "velero/volume-policy-n8n-prod.yaml" }, "\(files.map(\.path))")
        let text = try policy.yaml()
        #expect(text.contains("pvcLabels") && text.contains("cnpg.io/cluster: n8n-postgres") && text.contains("type: skip"), "\(text)")
        let schedule = try #require(files.first { $0.path == "velero/schedule-n8n-prod-daily.yaml" })
        #expect(try schedule.yaml().contains("name: drctl-n8n-prod-volume-policy"))
        // The cluster-wide backup holds every CNPG volume; keycloak backs up no volume data at all.
        #expect(try files.first { $0.path == "velero/volume-policy-cluster.yaml" }?.yaml().contains("keycloak-postgres") == true)
        #expect(!files.contains { $0.path == "velero/volume-policy-keycloak.yaml" })
    }
}

/// deploy/admission.yaml pins a drill's Restore to the kinds DrillIsolation leaves out: the two
/// lists are one, or a drill's Restore would be refused (or a kind let through).
struct AdmissionExclusionsTests {
    @Test func theAdmissionPolicyExcludesExactlyWhatADrillLeavesOut() throws {
        let text = try String(contentsOfFile: packageRoot.appendingPathComponent("deploy/admission.yaml").path, encoding: .utf8)
        let start = try #require(text.range(of: "         [\n          'clusters.postgresql.cnpg.io'"))
        let end = try #require(text.range(of: "].all(r, r in object.spec.?excludedResources", range: start.upperBound..<text.endIndex))
        let listed = text[start.lowerBound..<end.lowerBound].split(separator: "'").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
        #expect(listed == DrillIsolation.excludedResources, "admission.yaml: \(listed)")
    }
}

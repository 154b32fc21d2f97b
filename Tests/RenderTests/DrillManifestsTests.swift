import Foundation
import Testing
import TestSupport
import Yams
@testable import Policy
@testable import Render

/// The objects a cluster drill creates: valid against the real CRDs, and never able to write
/// into the production archive.
@Suite struct DrillManifestTests {
    static func policySet() -> PolicySet {
        let diags = Diagnostics()
        let set = PolicyLoader.load(paths: [RenderTests.policies], diagnostics: diags)
        #expect(!diags.hasErrors, "\(diags.all)")
        return set
    }

    static func objects() throws -> [[String: any Sendable]] {
        let set = policySet()
        let at = Date(timeIntervalSince1970: 1_795_753_200)
        var out: [[String: any Sendable]] = []
        for name in ["n8n-prod", "keycloak"] {
            let p = try #require(set.backupPolicies.first { $0.name.value == name })
            let store = try #require(set.objectStore(named: p.objectStore.value))
            let ns = DrillManifests.namespaceName(workload: name, at: at)
            out.append(DrillManifests.namespace(ns, drillID: "20261127T042000Z-1", workload: name, expires: "2026-11-27T10:20:00Z"))
            let mappings = p.namespaces.map { DrillIsolation.Mapping(source: $0.value, scratch: ns) }
            out.append(DrillIsolation.veleroRestore(name: ns, backup: "\(name)-daily-20261127023000", mappings: mappings, veleroNamespace: "velero",
                                                    modifiers: DrillIsolation.modifiersName(workload: name)))
            out.append(try DrillIsolation.modifiersConfigMap(workload: name, veleroNamespace: "velero", rules: DrillIsolation.modifierRules(p.drill?.modifiers ?? [])))
            out += DrillIsolation.networkPolicies(namespace: ns, drctlNamespace: "drctl", cnpgNamespace: "cnpg-system", clusters: p.cnpg.map(\.cluster.value),
                                                  egress: DrillIsolation.Egress(endpoint: store.endpoint.value,
                                                                                apiServer: .init(addresses: ["10.0.0.5"], ports: [6443])))
            for c in p.cnpg {
                out += DrillManifests.recoveryCluster(policy: p, cluster: c, store: store, namespace: ns, targetTime: "2026-11-27 04:20:00.000000+00")
                out.append(DrillManifests.checkJob(name: "drctl-check-\(c.cluster.value)-1", namespace: ns, cluster: c.cluster.value,
                                                   psqlArguments: ["-X", "-c", "select 1"], image: DrillManifests.postgresImage(major: 16)))
            }
        }
        return out
    }

    @Test func drillObjectsValidateAgainstTheCRDs() throws {
        try #require(FileManager.default.isExecutableFile(atPath: toolsPython), "no .venv-tools: run scripts/install-deps.sh")
        let crds = referenceDirectory("crds") ?? "../shared/reference/crds"
        if referenceDirectory("crds") == nil { print("SKIP: \(crds) not found: drill custom resources are checked for core kinds only") }
        let dir = tempPath("drill-manifests")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = RenderedFile(path: "drill.yaml", objects: try Self.objects())
        try file.yaml().write(toFile: dir + "/drill.yaml", atomically: true, encoding: .utf8)
        let (status, out) = try run(toolsPython, [packageRoot.appendingPathComponent("scripts/validate-manifests").path, "--crds", crds, dir])
        #expect(status == 0 && out.contains(" 0 problems"), "\(out)")
    }

    @Test func drillClustersHaveNoBackupOrArchiver() throws {
        let clusters = try Self.objects().filter { $0["kind"] as? String == "Cluster" }
        #expect(clusters.count == 2)
        for c in clusters {
            let spec = try #require(c["spec"] as? [String: any Sendable])
            #expect(spec["backup"] == nil, "a drill Cluster must not back up")
            let plugins = spec["plugins"] as? [[String: any Sendable]] ?? []
            #expect(!plugins.contains { $0["isWALArchiver"] as? Bool == true }, "a drill Cluster must not archive WAL")
            let recovery = (spec["bootstrap"] as? [String: any Sendable])?["recovery"] as? [String: any Sendable]
            let target = (recovery?["recoveryTarget"] as? [String: String])?["targetTime"]
            #expect(target == "2026-11-27 04:20:00.000000+00", "PostgreSQL's form, no Z")
            let yaml = try RenderedFile(path: "c.yaml", objects: [c]).yaml()
            #expect(!yaml.contains("retentionPolicy") && !yaml.contains("archive_command"), "\(yaml)")
        }
        // The plugin form carries its ObjectStore into the scratch namespace, without retention.
        let stores = try Self.objects().filter { $0["kind"] as? String == "ObjectStore" }
        #expect(stores.count == 1 && ((stores[0]["metadata"] as? [String: any Sendable])?["namespace"] as? String)?.hasPrefix("drill-keycloak-") == true)
    }

    @Test func drillNamespacesAreRecognisedOnlyWithLabelAndPrefix() {
        let name = DrillManifests.namespaceName(workload: String(repeating: "a", count: 70), at: Date(timeIntervalSince1970: 0), suffix: "ffff")
        #expect(name.count <= 63 && name.hasPrefix("drill-") && name.hasSuffix("-19700101000000-ffff"), "\(name)")
        #expect(DrillManifests.isDrillNamespace(name: "drill-n8n-prod-20261127042000", labels: [DrillManifests.label: "true"]))
        #expect(!DrillManifests.isDrillNamespace(name: "n8n-prod", labels: [DrillManifests.label: "true"]))
        #expect(!DrillManifests.isDrillNamespace(name: "drill-n8n-prod-20261127042000", labels: [:]))
    }
}

import Foundation
import Testing
import TestSupport
import Yams
@testable import Policy
@testable import Render

/// `drctl render` of the shipped policies: committed output, determinism, real schemas,
/// promtool, and runbooks for every alert.
@Suite struct RenderTests {
    static func render(_ paths: [String]) throws -> [RenderedFile] {
        let diags = Diagnostics()
        let set = PolicyLoader.load(paths: paths, diagnostics: diags)
        Linter.lint(set, into: diags)
        #expect(!diags.hasErrors, "\(diags.all)")
        let dir = paths[0]
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }.sorted()
        let sources = try files.map { ($0, try String(contentsOfFile: "\(dir)/\($0)", encoding: .utf8)) }
        return Renderer.render(set, policyFiles: sources, options: RenderOptions())
    }

    static var policies: String { packageRoot.appendingPathComponent("policies").path }
    static var generated: URL { packageRoot.appendingPathComponent("deploy/generated") }

    @Test func committedOutputHasNoDrift() throws {
        let rendered = try Self.render([Self.policies])
        for f in rendered {
            let committed = try? String(contentsOf: Self.generated.appendingPathComponent(f.path), encoding: .utf8)
            #expect(committed == (try f.yaml()), "deploy/generated/\(f.path) differs: run drctl render policies --out deploy/generated")
        }
        let onDisk = (FileManager.default.enumerator(atPath: Self.generated.path)?.compactMap { $0 as? String } ?? []).filter { $0.hasSuffix(".yaml") }
        #expect(Set(onDisk) == Set(rendered.map(\.path)), "stale or missing files in deploy/generated")
    }

    @Test func renderingIsByteIdentical() throws {
        let a = try Self.render([Self.policies]).map { try $0.yaml() }
        let b = try Self.render([Self.policies]).map { try $0.yaml() }
        #expect(a == b)
        // And through the CLI, twice, into fresh directories.
        let d1 = tempPath("render1"), d2 = tempPath("render2")
        defer { try? FileManager.default.removeItem(atPath: d1); try? FileManager.default.removeItem(atPath: d2) }
        for d in [d1, d2] {
            let (status, out) = try run(drctlBinary, ["render", Self.policies, "--out", d])
            #expect(status == 0, "\(out)")
        }
        let (status, diff) = try run("/usr/bin/diff", ["-r", d1, d2])
        #expect(status == 0, "\(diff)")
    }

    @Test func cnpgAndVeleroSpecifics() throws {
        let files = Dictionary(uniqueKeysWithValues: try Self.render([Self.policies]).map { ($0.path, try $0.yaml()) })
        let sb = try #require(files["cnpg/n8n-prod-n8n-postgres-scheduledbackup.yaml"])
        let doc = try #require(try Yams.load(yaml: sb) as? [String: Any])
        let spec = try #require(doc["spec"] as? [String: Any])
        // CNPG's cron has six fields: daily at 04:00 is "0 0 4 * * *", never "0 4 * * *".
        #expect(spec["schedule"] as? String == "0 0 4 * * *")
        #expect(spec["method"] as? String == "barmanObjectStore")
        let patch = try #require(try Yams.load(yaml: files["cnpg/n8n-prod-n8n-postgres-cluster-patch.yaml"]!) as? [String: Any])
        let backup = try #require((patch["spec"] as? [String: Any])?["backup"] as? [String: Any])
        #expect(backup["retentionPolicy"] as? String == "7d")
        let bos = try #require(backup["barmanObjectStore"] as? [String: Any])
        #expect(bos["destinationPath"] as? String == "s3://cluster-backups/cnpg")
        #expect(bos["serverName"] as? String == "n8n-postgres")
        // archive_timeout from the 5m RPO: half of it.
        #expect(sb.isEmpty == false && files["cnpg/n8n-prod-n8n-postgres-cluster-patch.yaml"]!.contains("archive_timeout: 150s"))

        let plugin = try #require(files["cnpg/keycloak-keycloak-postgres-cluster-patch.yaml"])
        #expect(plugin.contains("barman-cloud.cloudnative-pg.io") && plugin.contains("isWALArchiver: true"))
        #expect(files["cnpg/keycloak-keycloak-postgres-scheduledbackup.yaml"]!.contains("method: plugin"))

        let bsl = try #require(files["velero/backupstoragelocation-ceph-rgw.yaml"])
        #expect(bsl.contains("checksumAlgorithm: ''") && bsl.contains("s3ForcePathStyle: 'true'"))
        #expect(files["velero/schedule-cluster-monthly.yaml"]!.contains("ttl: 8760h0m0s"))
        #expect(files["velero/schedule-cluster-weekly.yaml"]!.contains("ttl: 672h0m0s"))
        #expect(files["velero/schedule-cluster-daily.yaml"]!.contains("ttl: 168h0m0s"))
    }

    @Test func everyAlertLinksAnExistingRunbook() throws {
        let text = try String(contentsOf: Self.generated.appendingPathComponent("prometheus/prometheusrule-drctl.yaml"), encoding: .utf8)
        let doc = try #require(try Yams.load(yaml: text.components(separatedBy: "\n").filter { !$0.hasPrefix("#") }.joined(separator: "\n")) as? [String: Any])
        let groups = try #require((doc["spec"] as? [String: Any])?["groups"] as? [[String: Any]])
        var seen = Set<String>()
        for g in groups {
            for r in g["rules"] as? [[String: Any]] ?? [] {
                let ann = try #require(r["annotations"] as? [String: String])
                for key in ["summary", "description", "runbook_url"] { #expect(ann[key]?.isEmpty == false, "\(r["alert"] ?? "?") lacks \(key)") }
                #expect((r["labels"] as? [String: String])?["severity"] != nil)
                let url = try #require(ann["runbook_url"])
                #expect(FileManager.default.fileExists(atPath: packageRoot.appendingPathComponent(url).path), "\(url) does not exist")
                seen.insert(r["alert"] as! String)
            }
        }
        #expect(seen == Set(Alerts.names).subtracting(Alerts.conditional), "the shipped policies have no kind: Rehearsal or heartbeat")
        // scripts/check-rules renders and tests the conditional ones from Tests/PolicyTests/Fixtures/alerts.
        for name in Alerts.names {
            #expect(FileManager.default.fileExists(atPath: packageRoot.appendingPathComponent("runbooks/\(name).md").path), "runbooks/\(name).md")
        }
    }


    @Test func manifestsValidateAgainstCRDsAndKubernetesSchemas() throws {
        try #require(FileManager.default.isExecutableFile(atPath: toolsPython), "no .venv-tools: run scripts/install-deps.sh")
        let crds = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/reference/crds").path
        if !FileManager.default.fileExists(atPath: crds) { print("SKIP: \(crds) not found: custom resources are checked for core kinds only") }
        // No CRD of AlertmanagerConfig in the reference: its fields as the operator's API reference documents them.
        let amc = packageRoot.appendingPathComponent("Tests/RenderTests/Schemas/monitoring.coreos.com_v1alpha1_AlertmanagerConfig.json").path
        let (status, out) = try run(toolsPython, [packageRoot.appendingPathComponent("scripts/validate-manifests").path,
                                                      "--crds", crds, "--schema", "monitoring.coreos.com/v1alpha1/AlertmanagerConfig=\(amc)",
                                                      packageRoot.appendingPathComponent("deploy").path])
        #expect(status == 0, "\(out)")
        #expect(out.contains(" 0 problems"), "\(out)")
    }

    @Test func validatorRejectsBrokenManifests() throws {
        try #require(FileManager.default.isExecutableFile(atPath: toolsPython), "no .venv-tools: run scripts/install-deps.sh")
        let crds = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/reference/crds").path
        let dir = tempPath("broken")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cron = try String(contentsOf: packageRoot.appendingPathComponent("deploy/cronjobs.yaml"), encoding: .utf8)
        try cron.replacingOccurrences(of: "concurrencyPolicy: Forbid", with: "concurrencyPolicy: Forbid\n  schedul: x")
            .write(toFile: "\(dir)/cronjobs.yaml", atomically: true, encoding: .utf8)
        if FileManager.default.fileExists(atPath: crds) {
            let sched = try String(contentsOf: Self.generated.appendingPathComponent("velero/schedule-cluster-daily.yaml"), encoding: .utf8)
            try sched.replacingOccurrences(of: "snapshotVolumes", with: "snapshotVolume").write(toFile: "\(dir)/s.yaml", atomically: true, encoding: .utf8)
        }
        let (status, out) = try run(toolsPython, [packageRoot.appendingPathComponent("scripts/validate-manifests").path, "--crds", crds, dir])
        #expect(status == 1, "\(out)")
        #expect(out.contains("'schedul' was unexpected"))
        if FileManager.default.fileExists(atPath: crds) { #expect(out.contains("'snapshotVolume' was unexpected")) }
    }

    @Test func shippedPoliciesMatchTheJSONSchema() throws {
        try #require(FileManager.default.isExecutableFile(atPath: toolsPython), "no .venv-tools: run scripts/install-deps.sh")
        let script = """
            import json, sys, yaml, jsonschema
            v = jsonschema.Draft202012Validator(json.load(open(sys.argv[1])))
            bad = 0
            for f in sys.argv[2:]:
                for d in yaml.safe_load_all(open(f)):
                    for e in v.iter_errors(d):
                        bad += 1
                        print(f, e.message)
            print("invalid documents:", bad)
            """
        let schema = packageRoot.appendingPathComponent("policies/schema/policy.schema.json").path
        let shipped = try FileManager.default.contentsOfDirectory(atPath: Self.policies).filter { $0.hasSuffix(".yaml") }
            .map { "\(Self.policies)/\($0)" }
        let (status, out) = try run(toolsPython, ["-c", script, schema] + shipped)
        #expect(status == 0 && out.contains("invalid documents: 0"), "\(out)")
        let misspelt = packageRoot.appendingPathComponent("Tests/PolicyTests/Fixtures/lint/unknown-field/policy.yaml").path
        let (_, badOut) = try run(toolsPython, ["-c", script, schema, misspelt])
        #expect(!badOut.contains("invalid documents: 0"), "\(badOut)")
    }

    /// Long-term tiers: CNPG must not apply its own window (it would delete the tier backups), so
    /// the plugin ObjectStore has no retentionPolicy and the Cluster patch removes one already
    /// set; the policy's new fields (tiers, a copy's own retention and objectLock, drill.from)
    /// match the JSON schema.
    @Test func tieredRetentionLeavesCNPGsRetentionPolicyOut() throws {
        let dir = tempPath("render-tiers")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            apiVersion: drctl.dev/v1alpha1
            kind: ObjectStore
            metadata: {name: ceph-rgw}
            spec:
              endpoint: http://rgw.example:80
              bucket: backups
              credentials: {secretName: s3}
              copies:
                - {to: offsite, retention: {window: 30d, monthly: 24}, objectLock: required}
            ---
            apiVersion: drctl.dev/v1alpha1
            kind: ObjectStore
            metadata: {name: offsite}
            spec: {endpoint: "https://s3.other.example", bucket: copy, credentials: {secretName: offsite-s3}}
            ---
            apiVersion: drctl.dev/v1alpha1
            kind: BackupPolicy
            metadata: {name: db}
            spec:
              objectStore: ceph-rgw
              namespaces: [app]
              objectives: {rpo: 1h, rto: 1h}
              cnpg:
                - cluster: in-tree
                  method: barmanObjectStore
                  baseBackup: {schedule: "0 0 2 * * *"}
                  wal: {archiveTimeout: 5m}
                  retention: {window: 7d, daily: 7, weekly: 4, monthly: 12}
                - cluster: plugged
                  baseBackup: {schedule: "0 0 3 * * *"}
                  wal: {archiveTimeout: 5m}
                  retention: {window: 7d, monthly: 12}
              drill:
                schedule: "0 5 * * *"
                from: offsite
            """.write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let files = Dictionary(uniqueKeysWithValues: try Self.render([dir]).map { ($0.path, try $0.yaml()) })
        let patch = try #require(files["cnpg/app-in-tree-cluster-patch.yaml"])
        let backup = try #require(((try Yams.load(yaml: patch) as? [String: Any])?["spec"] as? [String: Any])?["backup"] as? [String: Any])
        #expect(backup.keys.contains("retentionPolicy") && backup["retentionPolicy"] is NSNull, "null removes a retentionPolicy already set: \(patch)")
        #expect(patch.contains("daily 7, weekly 4, monthly 12") && patch.contains("drctl prune applies the window and the tiers"))
        let objectStore = try #require(files["cnpg/app-plugged-objectstore.yaml"])
        #expect(!objectStore.contains("retentionPolicy"), "\(objectStore)")

        try #require(FileManager.default.isExecutableFile(atPath: toolsPython), "no .venv-tools: run scripts/install-deps.sh")
        let script = """
            import json, sys, yaml, jsonschema
            v = jsonschema.Draft202012Validator(json.load(open(sys.argv[1])))
            print("invalid:", [e.message for d in yaml.safe_load_all(open(sys.argv[2])) for e in v.iter_errors(d)])
            """
        let (status, out) = try run(toolsPython, ["-c", script, packageRoot.appendingPathComponent("policies/schema/policy.schema.json").path, dir + "/p.yaml"])
        #expect(status == 0 && out.contains("invalid: []"), "\(out)")
    }

    @Test func promtoolAcceptsAndUnitTestsTheRules() throws {
        try #require(FileManager.default.isExecutableFile(atPath: toolsPython), "no .venv-tools: run scripts/install-deps.sh")
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool"), "promtool missing: run scripts/install-deps.sh")
        let (status, out) = try run(toolsPython, [packageRoot.appendingPathComponent("scripts/check-rules").path, "--drctl", drctlBinary])
        #expect(status == 0, "\(out)")
        #expect(out.contains("promtool test groups passed"), "\(out)")
    }
}

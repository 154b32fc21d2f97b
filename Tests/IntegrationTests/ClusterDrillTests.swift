import Foundation
import Testing
import Kube
import ObjectStore
import TestSupport

/// `drctl verify --mode cluster` against the Kubernetes API test server with its simulated
/// controllers: the Velero Restore reads the real Velero-format backup from RGW, the CNPG
/// recovery is a real barman-cloud point-in-time recovery of a real PostgreSQL 15 archive.
@Suite(.serialized) struct ClusterDrillTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    @Test func clusterDrillRestoresChecksAndTearsDown() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/opt/drctl-barman/bin/barman-cloud-backup"), "run scripts/install-deps.sh (barman-cloud venv)")
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "clusterdrill")
        let dest = "s3://\(bucket)/cnpg"
        let work = try testWorkDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let port = try freePort()
        let (up, upOut) = try run(packageRoot.appendingPathComponent("scripts/pg-up.sh").path,
                                  [work + "/src", String(port), rgw.barmanArchiveCommand(dest: dest, server: "app-db")])
        defer { _ = try? run(packageRoot.appendingPathComponent("scripts/pg-down.sh").path, [work + "/src"]) }
        try #require(up == 0, "\(upOut)")
        func psql(_ sql: String) throws -> String {
            let (st, out) = try run("/usr/bin/psql", ["-X", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-Atqc", sql])
            try #require(st == 0, "\(sql): \(out)")
            return out.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        _ = try psql("create table t(id int primary key, at timestamptz default clock_timestamp()); insert into t(id) select generate_series(1, 40)")
        let (bst, bout) = try run("/usr/sbin/runuser", ["-u", "postgres", "--", "/opt/drctl-barman/bin/barman-cloud-backup", "--endpoint-url", rgw.endpoint,
                                                       "--gzip", "--immediate-checkpoint", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", dest, "app-db"], env: rgw.environment)
        try #require(bst == 0, "\(bout)")
        _ = try psql("insert into t(id) values (41), (42)")
        try rgw.waitArchived(psql("select pg_walfile_name(pg_switch_wal())"), s3: s3, bucket: bucket)

        // The Velero side: a completed backup of n8n-prod with one Deployment.
        let backupName = "n8n-prod-daily-20261127023000"
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(backupName)/\(backupName).tar.gz"), bytes: VeleroBucketTests.tarball())
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(backupName)/velero-backup.json"), bytes: VeleroBucketTests.backupJSON(backupName, phase: "Completed"))
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(backupName)/\(backupName)-resource-list.json.gz"),
                         bytes: VeleroDrillTests.gzip(#"{"apps/v1/Deployment":["n8n-prod/n8n"]}"#))

        // The cluster: namespaces, the storage location, the credentials Secret; and two old
        // namespaces, only one of them a drill's.
        let api = try KubeAPI(controllers: rgw)
        let kubeconfig = try api.kubeconfig("token")
        let k = try KubeClient(config: KubeConfig.resolve(kubeconfig: kubeconfig, context: nil, namespace: nil))
        for ns in ["velero", "n8n-prod", "drctl"] { _ = try k.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": ns]]) }
        _ = try k.create(["apiVersion": "velero.io/v1", "kind": "BackupStorageLocation", "metadata": ["name": "default", "namespace": "velero"],
                          "spec": ["provider": "aws", "objectStorage": ["bucket": bucket, "prefix": "velero"]]])
        _ = try k.create(["apiVersion": "v1", "kind": "Secret", "metadata": ["name": "s3", "namespace": "drctl"],
                          "data": ["ACCESS_KEY_ID": Data(rgw.accessKey.utf8).base64EncodedString(), "SECRET_ACCESS_KEY": Data(rgw.secretKey.utf8).base64EncodedString()]])
        let expired = ["drctl.dev/drill-expires": "2020-01-01T00:00:00Z"]
        _ = try k.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "drill-old-20200101000000", "labels": ["drctl.dev/drill": "true"], "annotations": expired]])
        _ = try k.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "drill-not-ours", "annotations": expired]])

        let dir = work + "/policies"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func policy(_ expect: String) throws {
            try (rgw.objectStorePolicy(bucket: bucket) + """
                apiVersion: drctl.dev/v1alpha1
                kind: BackupPolicy
                metadata: {name: n8n-prod}
                spec:
                  objectStore: rgw
                  namespaces: [n8n-prod]
                  objectives: {rpo: 24h, rto: 10m}
                  velero:
                    volumes: none
                    schedules: [{tier: daily, schedule: "30 2 * * *", retention: 7d}]
                  cnpg:
                    - cluster: app-db
                      baseBackup: {schedule: "0 0 4 * * *"}
                      retention: 7d
                  drill:
                    schedule: "0 6 * * *"
                    checks:
                      - sql: {cluster: app-db, database: postgres, query: "select count(*) from t", expect: "\(expect)"}
                      - resourceCount: {kind: Deployment, min: 1}
                """).write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        }
        var env = rgw.environment
        env.removeValue(forKey: "AWS_ENDPOINT_URL")
        env["DRCTL_DATA_DIR"] = work + "/data"
        func verify() throws -> (Int32, String) {
            try run(drctlBinary, ["verify", "n8n-prod", "--mode", "cluster", "--kubeconfig", kubeconfig, "--policies", dir], env: env)
        }
        func drillNamespaces() throws -> [String] {
            try k.list(apiVersion: "v1", kind: "Namespace").compactMap { ($0["metadata"] as? [String: Any])?["name"] as? String }.filter { $0.hasPrefix("drill-") }
        }

        try policy("= 42")
        var (st, out) = try verify()
        print(out)   // the drill's own account, in the test log
        #expect(st == 0 && out.contains("drill of n8n-prod PASSED"), "\(out)")
        #expect(out.contains("got 42, expected = 42") && out.contains("1 Deployment in drill-n8n-prod-"), "\(out)")
        #expect(out.contains("janitor: deleted expired drill namespace drill-old-20200101000000"), "\(out)")
        var left = try drillNamespaces()
        #expect(left == ["drill-not-ours"], "only the unlabelled namespace is left: \(left)")

        // The operator's restore into a new namespace: kept, no checks; an existing one is refused.
        func restore() throws -> (Int32, String) {
            try run(drctlBinary, ["restore", "n8n-prod", "--policies", dir, "--at", "latest", "--namespace", "n8n-prod-restored", "--yes",
                                  "--kubeconfig", kubeconfig, "--quiet"], env: env)
        }
        (st, out) = try restore()
        print(out)
        #expect(st == 0 && out.contains("Restored n8n-prod into namespace n8n-prod-restored") && out.contains("Cluster in healthy state"), "\(out)")
        #expect(try k.get(apiVersion: "apps/v1", kind: "Deployment", namespace: "n8n-prod-restored", name: "n8n") != nil)
        (st, out) = try restore()
        #expect(st != 0 && out.contains("namespace n8n-prod-restored exists"), "\(out)")
        try k.delete(apiVersion: "v1", kind: "Namespace", name: "n8n-prod-restored")

        // SIGTERM mid-drill: the namespace is deleted on the way out.
        let pid = try spawn(drctlBinary, ["verify", "n8n-prod", "--mode", "cluster", "--kubeconfig", kubeconfig, "--policies", dir], env: env)
        for _ in 0..<100 where try drillNamespaces().count < 2 { usleep(50_000) }
        kill(pid, SIGTERM)
        let raw = reap(pid)
        #expect(raw & 0x7f == 0 ? (raw >> 8) & 0xff == 143 : raw & 0x7f == SIGTERM, "exit status \(raw)")
        for _ in 0..<100 where try drillNamespaces().count > 1 { usleep(50_000) }
        left = try drillNamespaces()
        #expect(left == ["drill-not-ours"], "after SIGTERM: \(left)")

        // A check that fails, and a corrupt Velero tarball: non-zero, named, torn down.
        try policy("= 999")
        (st, out) = try verify()
        #expect(st == 1 && out.contains("got 42, expected = 999"), "\(out)")
        try policy("= 42")
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(backupName)/\(backupName).tar.gz"), bytes: Array("not a tarball".utf8))
        (st, out) = try verify()
        #expect(st == 1 && out.contains("is corrupt"), "\(out)")
        left = try drillNamespaces()
        #expect(left == ["drill-not-ours"], "\(left)")

        // A broken WAL chain: refused before anything is created, the missing segment named.
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(backupName)/\(backupName).tar.gz"), bytes: VeleroBucketTests.tarball())
        var segments: [String] = []
        try s3.listObjects(bucket: bucket, prefix: "cnpg/app-db/wals/0000000100000000/") { segments += $0.objects.map(\.key).filter { !$0.contains(".backup") } }
        let victim = try #require(segments.sorted().dropLast().last, "\(segments)")
        try s3.deleteObject(S3URL(bucket: bucket, key: victim))
        (st, out) = try verify()
        let name = String(victim.split(separator: "/").last!.prefix(24))
        #expect(st == 1 && out.contains("WAL segment \(name) is missing"), "\(out)")
        left = try drillNamespaces()
        #expect(left == ["drill-not-ours"], "\(left)")
    }
}

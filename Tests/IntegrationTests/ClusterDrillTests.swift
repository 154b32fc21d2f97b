import Foundation
import Testing
import Kube
import ObjectStore
import TestSupport

/// A source PostgreSQL 15 archiving with real barman-cloud into RGW (server app-db under
/// `cnpg/`), one gzip base backup, a table `t` of 42 rows (40 before the backup) and the
/// segment holding the last two archived.
final class ArchivedDatabase {
    let rgw: RGW
    let s3: S3Client
    let bucket: String
    let work: String
    let port: Int

    init(rgw: RGW, bucket name: String) throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/opt/drctl-barman/bin/barman-cloud-backup"), "run scripts/install-deps.sh (barman-cloud venv)")
        self.rgw = rgw
        s3 = try rgw.client()
        bucket = try rgw.bucket(s3, name)
        work = try testWorkDirectory()
        port = try freePort()
        let dest = "s3://\(bucket)/cnpg"
        let (up, upOut) = try run(packageRoot.appendingPathComponent("scripts/pg-up.sh").path,
                                  [work + "/src", String(port), rgw.barmanArchiveCommand(dest: dest, server: "app-db")])
        try #require(up == 0, "\(upOut)")
        _ = try psql("create table t(id int primary key, at timestamptz default clock_timestamp()); insert into t(id) select generate_series(1, 40)")
        let (bst, bout) = try run("/usr/sbin/runuser", ["-u", "postgres", "--", "/opt/drctl-barman/bin/barman-cloud-backup", "--endpoint-url", rgw.endpoint,
                                                       "--gzip", "--immediate-checkpoint", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", dest, "app-db"], env: rgw.environment)
        try #require(bst == 0, "\(bout)")
        _ = try psql("insert into t(id) values (41), (42)")
        try rgw.waitArchived(psql("select pg_walfile_name(pg_switch_wal())"), s3: s3, bucket: bucket)
    }

    deinit {
        _ = try? run(packageRoot.appendingPathComponent("scripts/pg-down.sh").path, [work + "/src"])
        try? FileManager.default.removeItem(atPath: work)
    }

    func psql(_ sql: String) throws -> String {
        let (st, out) = try run("/usr/bin/psql", ["-X", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-Atqc", sql])
        try #require(st == 0, "\(sql): \(out)")
        return out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The environment drctl runs with: the test keys, its data directory under the work directory.
    var drctlEnvironment: [String: String] {
        var env = rgw.environment
        env.removeValue(forKey: "AWS_ENDPOINT_URL")
        env["DRCTL_DATA_DIR"] = work + "/data"
        return env
    }
}

/// An archived database, a Velero-format backup of n8n-prod with a Deployment and a
/// StatefulSet, and the Kubernetes API test server with its simulated controllers and the
/// namespaces, storage location and credentials Secret a cluster has.
final class ClusterFixture {
    let db: ArchivedDatabase
    var rgw: RGW { db.rgw }
    var s3: S3Client { db.s3 }
    var bucket: String { db.bucket }
    var work: String { db.work }
    let api: KubeAPI
    let admin: KubeClient
    let kubeconfig: String
    let policies: String
    let secretName: String
    let backupName = VeleroBucketTests.scheduledName()
    var env: [String: String]

    init(rgw: RGW, bucket name: String, network: String = "loopback", rbac: String? = nil, user: String = "token", secretName: String = "s3",
         superuserPassword: String? = nil) throws {
        db = try ArchivedDatabase(rgw: rgw, bucket: name)
        self.secretName = secretName
        policies = db.work + "/policies"
        api = try KubeAPI(controllers: rgw, network: network, rbac: rbac, superuserPassword: superuserPassword)
        kubeconfig = try api.kubeconfig(user)
        admin = try KubeClient(config: KubeConfig.resolve(kubeconfig: try api.kubeconfig("token"), context: nil, namespace: nil))
        env = db.drctlEnvironment
        let bucket = db.bucket, s3 = db.s3

        try putVeleroTarball(Self.tarball())
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(backupName)/velero-backup.json"), bytes: VeleroBucketTests.backupJSON(backupName, phase: "Completed"))
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(backupName)/\(backupName)-resource-list.json.gz"),
                         bytes: VeleroDrillTests.gzip(#"{"apps/v1/Deployment":["n8n-prod/n8n"],"apps/v1/StatefulSet":["n8n-prod/n8n-worker"]}"#))

        for ns in ["velero", "n8n-prod", "drctl"] { _ = try admin.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": ns]]) }
        _ = try admin.create(["apiVersion": "velero.io/v1", "kind": "BackupStorageLocation", "metadata": ["name": "default", "namespace": "velero"],
                              "spec": ["provider": "aws", "objectStorage": ["bucket": bucket, "prefix": "velero"]]])
        _ = try admin.create(["apiVersion": "v1", "kind": "Secret", "metadata": ["name": secretName, "namespace": "drctl"],
                              "data": ["ACCESS_KEY_ID": Data(rgw.accessKey.utf8).base64EncodedString(), "SECRET_ACCESS_KEY": Data(rgw.secretKey.utf8).base64EncodedString()]])
        try FileManager.default.createDirectory(atPath: policies, withIntermediateDirectories: true)
    }

    /// n8n-prod's backup: the Deployment n8n and the StatefulSet n8n-worker.
    static func tarball() throws -> [UInt8] {
        try VeleroBucketTests.tarball(extra: ["statefulsets.apps/namespaces/n8n-prod/n8n-worker.json":
            #"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"n8n-worker","namespace":"n8n-prod"},"spec":{"replicas":2}}"#])
    }

    func putVeleroTarball(_ bytes: [UInt8]) throws {
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(backupName)/\(backupName).tar.gz"), bytes: bytes)
    }

    /// The n8n-prod policy, its SQL check expecting `expect`.
    func policy(_ expect: String, rto: String = "10m") throws {
        try (rgw.objectStorePolicy(bucket: bucket, secretName: secretName) + """
            apiVersion: drctl.dev/v1alpha1
            kind: BackupPolicy
            metadata: {name: n8n-prod}
            spec:
              objectStore: rgw
              namespaces: [n8n-prod]
              objectives: {rpo: 24h, rto: \(rto)}
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
                  - freshness: {cluster: app-db, database: postgres, table: t, column: at}
                  - resourceCount: {kind: Deployment, min: 1}
                  - podsReady: {}
            """).write(toFile: policies + "/p.yaml", atomically: true, encoding: .utf8)
    }

    func verify(_ extra: [String] = []) throws -> (Int32, String) {
        try run(drctlBinary, ["verify", "n8n-prod", "--mode", "cluster", "--kubeconfig", kubeconfig, "--policies", policies] + extra, env: env)
    }

    func restore(into ns: String) throws -> (Int32, String) {
        try run(drctlBinary, ["restore", "n8n-prod", "--policies", policies, "--at", "latest", "--namespace", ns, "--yes",
                              "--kubeconfig", kubeconfig, "--quiet"], env: env)
    }

    func drillNamespaces() throws -> [String] {
        try admin.list(apiVersion: "v1", kind: "Namespace").compactMap { ($0["metadata"] as? [String: Any])?["name"] as? String }.filter { $0.hasPrefix("drill-") }
    }
}

/// `drctl verify --mode cluster` against the Kubernetes API test server with its simulated
/// controllers: the Velero Restore reads the real Velero-format backup from RGW, the CNPG
/// recovery is a real barman-cloud point-in-time recovery of a real PostgreSQL 15 archive.
@Suite(.serialized) struct ClusterDrillTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    @Test func clusterDrillRestoresChecksAndTearsDown() throws {
        let f = try ClusterFixture(rgw: rgw, bucket: "clusterdrill")
        let k = f.admin
        // Two old namespaces, only one of them a drill's.
        let expired = ["drctl.dev/drill-expires": "2020-01-01T00:00:00Z"]
        _ = try k.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "drill-old-20200101000000", "labels": ["drctl.dev/drill": "true"], "annotations": expired]])
        _ = try k.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "drill-not-ours", "annotations": expired]])

        try f.policy("= 42")
        var (st, out) = try f.verify()
        print(out)   // the drill's own account, in the test log
        #expect(st == 0 && out.contains("drill of n8n-prod PASSED"), "\(out)")
        #expect(out.contains("got 42, expected = 42") && out.contains("1 Deployment in drill-n8n-prod-") && out.contains("2 items restored"), "\(out)")
        #expect(out.contains("checks connect directly to app-db-rw at 127.0.0.1:"), "an admin on the Service network connects directly: \(out)")
        #expect(out.contains("[passed] podsReady: 2 available: Deployment n8n, StatefulSet n8n-worker"), "\(out)")
        #expect(out.contains("janitor: deleted expired drill namespace drill-old-20200101000000"), "\(out)")
        var left = try f.drillNamespaces()
        #expect(left == ["drill-not-ours"], "only the unlabelled namespace is left: \(left)")

        // The operator's restore into a new namespace: kept, no checks; an existing one is refused.
        (st, out) = try f.restore(into: "n8n-prod-restored")
        print(out)
        #expect(st == 0 && out.contains("Restored n8n-prod into namespace n8n-prod-restored") && out.contains("Cluster in healthy state"), "\(out)")
        #expect(try k.get(apiVersion: "apps/v1", kind: "Deployment", namespace: "n8n-prod-restored", name: "n8n") != nil)
        (st, out) = try f.restore(into: "n8n-prod-restored")
        #expect(st != 0 && out.contains("namespace n8n-prod-restored exists"), "\(out)")
        try k.delete(apiVersion: "v1", kind: "Namespace", name: "n8n-prod-restored")

        // SIGTERM mid-drill: the namespace is deleted on the way out.
        let pid = try spawn(drctlBinary, ["verify", "n8n-prod", "--mode", "cluster", "--kubeconfig", f.kubeconfig, "--policies", f.policies], env: f.env)
        try waitUntil(100, every: 50_000) { try f.drillNamespaces().count >= 2 }
        kill(pid, SIGTERM)
        let raw = reap(pid)
        #expect(raw & 0x7f == 0 ? (raw >> 8) & 0xff == 143 : raw & 0x7f == SIGTERM, "exit status \(raw)")
        try waitUntil(100, every: 50_000) { try f.drillNamespaces().count <= 1 }
        left = try f.drillNamespaces()
        #expect(left == ["drill-not-ours"], "after SIGTERM: \(left)")

        // SIGKILL mid-drill leaves the namespace; once its expiry has passed (moved into the past
        // here rather than waited for), the next run's janitor deletes it.
        let killed = try spawn(drctlBinary, ["verify", "n8n-prod", "--mode", "cluster", "--kubeconfig", f.kubeconfig, "--policies", f.policies], env: f.env)
        try waitUntil(100, every: 50_000) { try f.drillNamespaces().count >= 2 }
        kill(killed, SIGKILL)
        _ = reap(killed)
        let stale = try #require(try f.drillNamespaces().first { $0 != "drill-not-ours" }, "the killed drill's namespace")
        usleep(500_000)
        #expect(try f.drillNamespaces().contains(stale), "nothing deletes it before its expiry")
        _ = try k.apply(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": stale, "annotations": ["drctl.dev/drill-expires": "2020-01-01T00:00:00Z"]]],
                        fieldManager: "test", force: true)
        (st, out) = try f.verify()
        #expect(st == 0 && out.contains("janitor: deleted expired drill namespace \(stale)"), "\(out)")
        left = try f.drillNamespaces()
        #expect(left == ["drill-not-ours"], "after the janitor: \(left)")

        // A check that fails, and a corrupt Velero tarball: non-zero, named, torn down.
        try f.policy("= 999")
        (st, out) = try f.verify()
        #expect(st == 1 && out.contains("got 42, expected = 999"), "\(out)")
        try f.policy("= 42")
        try f.putVeleroTarball(Array("not a tarball".utf8))
        (st, out) = try f.verify()
        #expect(st == 1 && out.contains("is corrupt"), "\(out)")
        left = try f.drillNamespaces()
        #expect(left == ["drill-not-ours"], "\(left)")

        // A broken WAL chain: refused before anything is created, the missing segment named.
        try f.putVeleroTarball(ClusterFixture.tarball())
        var segments: [String] = []
        try f.s3.listObjects(bucket: f.bucket, prefix: "cnpg/app-db/wals/0000000100000000/") { segments += $0.objects.map(\.key).filter { !$0.contains(".backup") } }
        let victim = try #require(segments.sorted().dropLast().last, "\(segments)")
        try f.s3.deleteObject(S3URL(bucket: f.bucket, key: victim))
        (st, out) = try f.verify()
        let name = String(victim.split(separator: "/").last!.prefix(24))
        #expect(st == 1 && out.contains("WAL segment \(name) is missing"), "\(out)")
        left = try f.drillNamespaces()
        #expect(left == ["drill-not-ours"], "\(left)")
    }
}

import Foundation
import SigV4
import Testing
import Kube
import ObjectStore
import TestSupport

/// A source PostgreSQL 15 archiving with real barman-cloud into RGW (server `server`, app-db
/// unless named, under `cnpg/`), one gzip base backup, a table `t` of 42 rows (40 before the
/// backup) and the segment holding the last two archived.
final class ArchivedDatabase {
    let rgw: RGW
    let s3: S3Client
    let bucket: String
    let server: String
    let work: String
    let port: Int

    /// `sharing`: archive into that existing bucket (another database's) instead of a new one.
    init(rgw: RGW, bucket name: String, server: String = "app-db", sharing: String? = nil) throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/opt/drctl-barman/bin/barman-cloud-backup"), "run scripts/install-deps.sh (barman-cloud venv)")
        self.rgw = rgw
        self.server = server
        s3 = try rgw.client()
        bucket = try sharing ?? rgw.bucket(s3, name)
        work = try testWorkDirectory()
        port = try freePort()
        let dest = "s3://\(bucket)/cnpg"
        let (up, upOut) = try run(packageRoot.appendingPathComponent("scripts/pg-up.sh").path,
                                  [work + "/src", String(port), rgw.barmanArchiveCommand(dest: dest, server: server)])
        try #require(up == 0, "\(upOut)")
        _ = try psql("create table t(id int primary key, at timestamptz default clock_timestamp()); insert into t(id) select generate_series(1, 40)")
        try baseBackup()
        _ = try psql("insert into t(id) values (41), (42)")
        try switchAndWaitArchived()
    }

    /// Ends the current WAL segment and waits until barman-cloud has archived it.
    func switchAndWaitArchived() throws {
        try rgw.waitArchived(psql("select pg_walfile_name(pg_switch_wal())"), s3: s3, bucket: bucket, server: server)
    }

    /// One more gzip base backup with real barman-cloud-backup.
    func baseBackup() throws {
        let (bst, bout) = try run("/usr/sbin/runuser", ["-u", "postgres", "--", "/opt/drctl-barman/bin/barman-cloud-backup", "--endpoint-url", rgw.endpoint,
                                                       "--gzip", "--immediate-checkpoint", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres",
                                                       "s3://\(bucket)/cnpg", server], env: rgw.environment)
        try #require(bst == 0, "\(bout)")
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
    /// Commits row 43, then (a second later) the returned target time, then row 44, and waits
    /// until the WAL holding both is archived: an exact point-in-time restore to the target has 43, not 44.
    func targetBetweenTwoCommits() throws -> String {
        _ = try psql("insert into t(id) values (43)")
        usleep(1_100_000)
        let target = try psql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        usleep(1_100_000)
        _ = try psql("insert into t(id) values (44)")
        try switchAndWaitArchived()
        return target
    }

    /// `drctl restore ARGS --at target` into a new directory, started, and the rows of `t` it
    /// holds as psql prints them (`count|max`); the restored server is stopped afterwards.
    func restoredRows(_ args: [String], at target: String, env: [String: String], into name: String = "restored") throws -> (status: Int32, output: String, rows: String) {
        let dir = work + "/" + name, port = try freePort()
        let (st, out) = try run(drctlBinary, ["restore"] + args + ["--at", target, "--to", dir, "--yes", "--start", "--port", String(port),
                                                                   "--scratch-dir", work + "/scratch-" + name], env: env)
        defer { _ = try? run("/usr/sbin/runuser", ["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D", dir, "-m", "immediate", "-w", "stop"]) }
        guard st == 0 else { return (st, out, "") }
        let (qst, rows) = try run("/usr/bin/psql", ["-X", "-h", dir, "-p", String(port), "-U", "postgres", "-Atqc", "select count(*), max(id) from t"])
        return (st, out, qst == 0 ? rows.trimmingCharacters(in: .whitespacesAndNewlines) : "psql failed: \(rows)")
    }

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

    init(rgw: RGW, bucket name: String, running: [String]? = nil, network: String = "loopback", rbac: String? = nil,
         admission: String? = packageRoot.appendingPathComponent("deploy/admission.yaml").path, user: String = "token",
         secretName: String = "s3", superuserPassword: String? = nil, extraTokens: [String: String] = [:]) throws {
        db = try ArchivedDatabase(rgw: rgw, bucket: name)
        self.secretName = secretName
        policies = db.work + "/policies"
        api = try KubeAPI(controllers: rgw, running: running, network: network, rbac: rbac, admission: admission, superuserPassword: superuserPassword,
                          extraTokens: extraTokens)
        kubeconfig = try api.kubeconfig(user)
        admin = try KubeClient(config: KubeConfig.resolve(kubeconfig: try api.kubeconfig("token"), context: nil, namespace: nil))
        env = db.drctlEnvironment
        let bucket = db.bucket, s3 = db.s3

        try Self.putVeleroBackup(s3, bucket: bucket, name: backupName)

        for ns in ["velero", "n8n-prod", "drctl"] { _ = try admin.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": ns]]) }
        _ = try admin.create(["apiVersion": "velero.io/v1", "kind": "BackupStorageLocation", "metadata": ["name": "default", "namespace": "velero"],
                              "spec": ["provider": "aws", "objectStorage": ["bucket": bucket, "prefix": "velero"]]])
        _ = try admin.create(["apiVersion": "v1", "kind": "Secret", "metadata": ["name": secretName, "namespace": "drctl"],
                              "data": ["ACCESS_KEY_ID": Data(rgw.accessKey.utf8).base64EncodedString(), "SECRET_ACCESS_KEY": Data(rgw.secretKey.utf8).base64EncodedString()]])
        try FileManager.default.createDirectory(atPath: policies, withIntermediateDirectories: true)
    }

    /// A whole-cluster backup, as Velero takes it of a cluster like the user's: n8n-prod with its
    /// Deployment (which calls an outside webhook), a StatefulSet, a CronJob, and production's
    /// database objects (the CNPG Cluster whose backup section points at the production archive,
    /// its ScheduledBackup, the PVC, pod, Service and Secret CNPG made for it); keycloak with a
    /// Deployment; a cluster-scoped ClusterRole; the Namespace objects.
    static func items(bucket: String) -> [String: String] {
        let cnpg = #""labels":{"cnpg.io/cluster":"app-db"}"#
        return [
            "namespaces/cluster/n8n-prod.json": #"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n8n-prod"}}"#,
            "namespaces/cluster/keycloak.json": #"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"keycloak"}}"#,
            "clusterroles.rbac.authorization.k8s.io/cluster/prod-admin.json":
                #"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"prod-admin"},"rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}"#,
            "deployments.apps/namespaces/n8n-prod/n8n.json":
                #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"n8n","namespace":"n8n-prod","labels":{"app":"n8n"}},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"n8n"}},"template":{"metadata":{"labels":{"app":"n8n"}},"spec":{"containers":[{"name":"n8n","image":"n8nio/n8n","env":[{"name":"WEBHOOK_URL","value":"https://hooks.example.com/n8n"}]}]}}}}"#,
            "statefulsets.apps/namespaces/n8n-prod/n8n-worker.json":
                #"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"n8n-worker","namespace":"n8n-prod"},"spec":{"replicas":2}}"#,
            "cronjobs.batch/namespaces/n8n-prod/n8n-prune.json":
                #"{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"n8n-prune","namespace":"n8n-prod"},"spec":{"schedule":"*/5 * * * *","suspend":false,"jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"prune","image":"curlimages/curl","args":["https://hooks.example.com/prune"]}]}}}}}}"#,
            "clusters.postgresql.cnpg.io/namespaces/n8n-prod/app-db.json":
                #"{"apiVersion":"postgresql.cnpg.io/v1","kind":"Cluster","metadata":{"name":"app-db","namespace":"n8n-prod"},"spec":{"instances":1,"storage":{"size":"1Gi"},"backup":{"barmanObjectStore":{"destinationPath":"s3://\#(bucket)/cnpg","endpointURL":"http://127.0.0.1:1","s3Credentials":{"accessKeyId":{"name":"s3","key":"ACCESS_KEY_ID"},"secretAccessKey":{"name":"s3","key":"SECRET_ACCESS_KEY"}}},"retentionPolicy":"1d"}}}"#,
            "scheduledbackups.postgresql.cnpg.io/namespaces/n8n-prod/app-db-daily.json":
                #"{"apiVersion":"postgresql.cnpg.io/v1","kind":"ScheduledBackup","metadata":{"name":"app-db-daily","namespace":"n8n-prod"},"spec":{"schedule":"0 0 4 * * *","cluster":{"name":"app-db"}}}"#,
            "persistentvolumeclaims/namespaces/n8n-prod/app-db-1.json":
                #"{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"app-db-1","namespace":"n8n-prod",\#(cnpg)},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}"#,
            "pods/namespaces/n8n-prod/app-db-1.json":
                #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"app-db-1","namespace":"n8n-prod",\#(cnpg)},"spec":{"containers":[{"name":"postgres","image":"ghcr.io/cloudnative-pg/postgresql:15"}]}}"#,
            "services/namespaces/n8n-prod/app-db-rw.json":
                #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"app-db-rw","namespace":"n8n-prod",\#(cnpg)},"spec":{"clusterIP":"10.96.9.9","ports":[{"port":5432}]}}"#,
            "secrets/namespaces/n8n-prod/app-db-superuser.json":
                #"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"app-db-superuser","namespace":"n8n-prod",\#(cnpg)},"data":{"password":"cHJvZHVjdGlvbg=="}}"#,
            // A workload whose pods pose as the database's, to get the recovery Cluster's network rule.
            "deployments.apps/namespaces/n8n-prod/impostor.json":
                #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"impostor","namespace":"n8n-prod"},"spec":{"replicas":1,"template":{"metadata":{"labels":{"cnpg.io/cluster":"app-db"}},"spec":{"containers":[{"name":"x","image":"busybox"}]}}}}"#,
            // The same through a kind the admission rule never listed: its controller would make the pods.
            "replicationcontrollers/namespaces/n8n-prod/impostor-rc.json":
                #"{"apiVersion":"v1","kind":"ReplicationController","metadata":{"name":"impostor-rc","namespace":"n8n-prod"},"spec":{"replicas":1,"selector":{"cnpg.io/cluster":"app-db","role":"primary"},"template":{"metadata":{"labels":{"cnpg.io/cluster":"app-db","role":"primary"}},"spec":{"containers":[{"name":"x","image":"busybox"}]}}}}"#,
            "networkpolicies.networking.k8s.io/namespaces/n8n-prod/allow-all-egress.json":
                #"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"allow-all-egress","namespace":"n8n-prod"},"spec":{"podSelector":{},"policyTypes":["Egress"],"egress":[{}]}}"#,
            "deployments.apps/namespaces/keycloak/keycloak.json":
                #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"keycloak","namespace":"keycloak"},"spec":{"replicas":1}}"#,
        ]
    }

    /// The whole-cluster backup `name` (tarball, velero-backup.json of a Completed backup of
    /// every namespace, resource list) under `velero/backups/` of `bucket`, as Velero writes it.
    static func putVeleroBackup(_ s3: S3Client, bucket: String, name: String) throws {
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(name)/\(name).tar.gz"), bytes: tarball(bucket: bucket))
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(name)/velero-backup.json"),
                         bytes: VeleroBucketTests.backupJSON(name, phase: "Completed", namespaces: ["*"]))
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(name)/\(name)-resource-list.json.gz"),
                         bytes: VeleroDrillTests.gzip(resourceList(bucket: bucket)))
    }

    static func tarball(bucket: String) throws -> [UInt8] {
        try VeleroBucketTests.tarball(extra: items(bucket: bucket), base: false)
    }

    /// The backup's `-resource-list.json.gz` content, from the same items.
    static func resourceList(bucket: String) throws -> String {
        var list: [String: [String]] = [:]
        for json in items(bucket: bucket).values {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
            let meta = o["metadata"] as? [String: Any] ?? [:]
            let name = meta["name"] as? String ?? "", ns = meta["namespace"] as? String
            list["\(o["apiVersion"]!)/\(o["kind"]!)", default: []].append(ns.map { "\($0)/\(name)" } ?? name)
        }
        return String(decoding: try JSONSerialization.data(withJSONObject: list.mapValues { $0.sorted() }, options: [.sortedKeys]), as: UTF8.self)
    }

    func putVeleroTarball(_ bytes: [UInt8]) throws {
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(backupName)/\(backupName).tar.gz"), bytes: bytes)
    }

    /// The n8n-prod policy, its SQL check expecting `expect`; `drill`: more lines of its drill.
    func policy(_ expect: String, rto: String = "10m", namespaces: String = "[n8n-prod]", drill: String = "", schedule: String = "0 6 * * *") throws {
        try (rgw.objectStorePolicy(bucket: bucket, secretName: secretName) + """
            apiVersion: drctl.dev/v1alpha1
            kind: BackupPolicy
            metadata: {name: n8n-prod}
            spec:
              objectStore: rgw
              namespaces: \(namespaces)
              objectives: {rpo: 24h, rto: \(rto)}
              velero:
                volumes: none
                schedules: [{tier: daily, schedule: "30 2 * * *", retention: 7d}]
              cnpg:
                - cluster: app-db
                  namespace: n8n-prod
                  baseBackup: {schedule: "0 0 4 * * *"}
                  retention: 7d
              drill:
                schedule: "\(schedule)"
                checks:
                  - sql: {cluster: app-db, database: postgres, query: "select count(*) from t", expect: "\(expect)"}
                  - freshness: {cluster: app-db, database: postgres, table: t, column: at}
                  - resourceCount: {kind: Deployment, min: 1}
                  - podsReady: {}
            \(drill)
            """).write(toFile: policies + "/p.yaml", atomically: true, encoding: .utf8)
    }

    func verify(_ extra: [String] = []) throws -> (Int32, String) {
        try run(drctlBinary, ["verify", "n8n-prod", "--mode", "cluster", "--kubeconfig", kubeconfig, "--policies", policies] + extra, env: env)
    }

    func restore(into ns: String) throws -> (Int32, String) {
        try run(drctlBinary, ["restore", "n8n-prod", "--policies", policies, "--at", "latest", "--namespace", ns, "--yes",
                              "--kubeconfig", kubeconfig, "--quiet"], env: env)
    }

    /// Every object of the production archive (barman's and Velero's prefixes) with the SHA-256
    /// of its content: a drill must leave it byte for byte as it was.
    func archive() throws -> [String: String] {
        var out: [String: String] = [:]
        // Velero itself writes restore logs and results under restores/: the backups are the archive.
        for prefix in ["cnpg/", "velero/backups/"] {
            var keys: [String] = []
            try s3.listObjects(bucket: bucket, prefix: prefix) { keys += $0.objects.map(\.key) }
            for key in keys {
                var bytes: [UInt8] = []
                try s3.getObject(S3URL(bucket: bucket, key: key)) { bytes += $0 }
                out[key] = sha256Hex(bytes)
            }
        }
        return out
    }

    /// Runs `body` (drills, restores) and checks its blast radius: no write outside drill
    /// namespaces (by the server's write log) and the production archive unchanged.
    func contained<T>(_ what: String, allowOutside: (String) -> Bool = { _ in false }, _ body: () throws -> T) throws -> T {
        let mark = try api.writes().count
        let before = try archive()
        let result = try body()
        let outside = try api.writesOutsideDrills(since: mark).filter { !allowOutside($0) }
        #expect(outside.isEmpty, "\(what) wrote outside drill namespaces: \(outside)")
        let after = try archive()
        let changed = before.filter { after[$0.key] != $0.value }.map(\.key).sorted()
        #expect(changed.isEmpty, "\(what) changed or removed objects of the production archive: \(changed)")
        // The source database keeps archiving its own WAL (timeline 1) meanwhile; anything else new
        // (a timeline history, another timeline's segment, a Velero backup) came from the drill.
        let foreign = after.keys.filter { before[$0] == nil && !($0.hasPrefix("cnpg/app-db/wals/00000001") && !$0.hasSuffix(".history")) }.sorted()
        #expect(foreign.isEmpty, "\(what) wrote into the production archive: \(foreign)")
        return result
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
        // The janitor's deletion of the expired drill namespace is the one write outside this drill's own namespaces.
        var (st, out) = try f.contained("the drill", allowOutside: { $0.contains("drill-old-20200101000000") }) { try f.verify() }
        print(out)   // the drill's own account, in the test log
        #expect(st == 0 && out.contains("drill of n8n-prod PASSED"), "\(out)")
        // n8n-prod's Deployment, StatefulSet and CronJob; none of its database objects.
        #expect(out.contains("got 42, expected = 42") && out.contains("1 Deployment in drill-n8n-prod-") && out.contains(" items restored into drill-n8n-prod-"), "\(out)")
        #expect(out.contains("checks connect directly to app-db-rw at 127.0.0.1:"), "an admin on the Service network connects directly: \(out)")
        #expect(out.contains("[passed] podsReady: 2 available: Deployment n8n, StatefulSet n8n-worker"), "\(out)")
        #expect(out.contains("janitor: deleted expired drill namespace drill-old-20200101000000"), "\(out)")
        var left = try f.drillNamespaces()
        #expect(left == ["drill-not-ours"], "only the unlabelled namespace is left: \(left)")

        // The operator's restore into a new namespace: kept, no checks; an existing one is refused.
        (st, out) = try f.contained("the restore", allowOutside: { $0.contains("n8n-prod-restored") }) { try f.restore(into: "n8n-prod-restored") }
        print(out)
        #expect(st == 0 && out.contains("Restored n8n-prod into namespace n8n-prod-restored") && out.contains("Cluster in healthy state"), "\(out)")
        #expect(try k.get(apiVersion: "apps/v1", kind: "Deployment", namespace: "n8n-prod-restored", name: "n8n") != nil)
        // drctl's recovery Cluster is the database: production's Cluster and its ScheduledBackup stay out.
        let restoredCluster = try k.get(apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", namespace: "n8n-prod-restored", name: "app-db")
        #expect(((restoredCluster?["spec"] as? [String: Any])?["bootstrap"] as? [String: Any])?["recovery"] != nil && (restoredCluster?["spec"] as? [String: Any])?["backup"] == nil)
        #expect(try k.list(apiVersion: "postgresql.cnpg.io/v1", kind: "ScheduledBackup", namespace: "n8n-prod-restored").isEmpty)
        (st, out) = try f.restore(into: "n8n-prod-restored")
        #expect(st != 0 && out.contains("namespace n8n-prod-restored exists"), "\(out)")
        try k.delete(apiVersion: "v1", kind: "Namespace", name: "n8n-prod-restored")
        // Gone before the next step counts writes: the namespace controller's deletions are not a drill's.
        #expect(try waitUntil(600, every: 50_000) { try k.get(apiVersion: "v1", kind: "Namespace", name: "n8n-prod-restored") == nil }, "n8n-prod-restored still there")
        // A drill's scratch namespace is refused even with --force: its drill or the janitor would delete the restore.
        _ = try k.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "drill-n8n-prod-20261201060000-aa", "labels": ["drctl.dev/drill": "true"],
                                                                                 "annotations": ["drctl.dev/drill-expires": "2999-01-01T00:00:00Z"]]])
        (st, out) = try run(drctlBinary, ["restore", "n8n-prod", "--policies", f.policies, "--at", "latest", "--namespace", "drill-n8n-prod-20261201060000-aa",
                                          "--force", "--yes", "--kubeconfig", f.kubeconfig, "--quiet"], env: f.env)
        #expect(st != 0 && out.contains("is a drill's scratch namespace"), "\(out)")
        #expect(try k.list(apiVersion: "apps/v1", kind: "Deployment", namespace: "drill-n8n-prod-20261201060000-aa").isEmpty)
        try k.delete(apiVersion: "v1", kind: "Namespace", name: "drill-n8n-prod-20261201060000-aa")
        try waitUntil(100, every: 50_000) { try k.get(apiVersion: "v1", kind: "Namespace", name: "drill-n8n-prod-20261201060000-aa") == nil }

        // SIGTERM mid-drill: the namespace is deleted on the way out.
        try f.contained("a drill stopped by SIGTERM") {
            let pid = try spawn(drctlBinary, ["verify", "n8n-prod", "--mode", "cluster", "--kubeconfig", f.kubeconfig, "--policies", f.policies], env: f.env)
            try waitUntil(100, every: 50_000) { try f.drillNamespaces().count >= 2 }
            kill(pid, SIGTERM)
            let raw = try reap(pid)
            #expect(exitCode(raw) == 143, "exit status \(raw)")
            try waitUntil(100, every: 50_000) { try f.drillNamespaces().count <= 1 }
        }
        left = try f.drillNamespaces()
        #expect(left == ["drill-not-ours"], "after SIGTERM: \(left)")

        // SIGKILL mid-drill leaves the namespace; once its expiry has passed (moved into the past
        // here rather than waited for), the next run's janitor deletes it.
        try f.contained("a drill killed by SIGKILL") {
            let killed = try spawn(drctlBinary, ["verify", "n8n-prod", "--mode", "cluster", "--kubeconfig", f.kubeconfig, "--policies", f.policies], env: f.env)
            try waitUntil(100, every: 50_000) { try f.drillNamespaces().count >= 2 }
            kill(killed, SIGKILL)
            _ = try reap(killed)
        }
        let stale = try #require(try f.drillNamespaces().first { $0 != "drill-not-ours" }, "the killed drill's namespace")
        usleep(500_000)
        #expect(try f.drillNamespaces().contains(stale), "nothing deletes it before its expiry")
        _ = try k.apply(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": stale, "annotations": ["drctl.dev/drill-expires": "2020-01-01T00:00:00Z"]]],
                        fieldManager: "test", force: true)
        (st, out) = try f.contained("the next drill") { try f.verify() }
        #expect(st == 0 && out.contains("janitor: deleted expired drill namespace \(stale)"), "\(out)")
        left = try f.drillNamespaces()
        #expect(left == ["drill-not-ours"], "after the janitor: \(left)")

        // A check that fails, and a corrupt Velero tarball: non-zero, named, torn down.
        try f.policy("= 999")
        (st, out) = try f.contained("a drill whose check fails") { try f.verify() }
        #expect(st == 1 && out.contains("got 42, expected = 999"), "\(out)")
        try f.policy("= 42")
        try f.putVeleroTarball(Array("not a tarball".utf8))
        (st, out) = try f.contained("a drill of a corrupt Velero backup") { try f.verify() }
        #expect(st == 1 && out.contains("is corrupt"), "\(out)")
        left = try f.drillNamespaces()
        #expect(left == ["drill-not-ours"], "\(left)")

        // A broken WAL chain: refused before anything is created, the missing segment named.
        try f.putVeleroTarball(ClusterFixture.tarball(bucket: f.bucket))
        var segments: [String] = []
        try f.s3.listObjects(bucket: f.bucket, prefix: "cnpg/app-db/wals/0000000100000000/") { segments += $0.objects.map(\.key).filter { !$0.contains(".backup") } }
        let victim = try #require(segments.sorted().dropLast().last, "\(segments)")
        try f.s3.deleteObject(S3URL(bucket: f.bucket, key: victim))
        (st, out) = try f.contained("a drill of a broken WAL chain") { try f.verify() }
        let name = String(victim.split(separator: "/").last!.prefix(24))
        #expect(st == 1 && out.contains("WAL segment \(name) is missing"), "\(out)")
        left = try f.drillNamespaces()
        #expect(left == ["drill-not-ours"], "\(left)")
    }

    /// A policy of every namespace (`*`, the shipped `cluster` policy's form) against a backup of
    /// n8n-prod and keycloak, read as Velero reads a Restore: each namespace lands in a scratch
    /// namespace of its own, sealed before the Restore was created; production's CNPG objects,
    /// cluster-scoped resources and live namespaces are untouched; CronJobs come back suspended
    /// and the policy's modifiers are applied; the evidence says what was sealed.
    @Test func everyNamespaceDrillIsSealedOffFromProduction() throws {
        let f = try ClusterFixture(rgw: rgw, bucket: "sealeddrill")
        let k = f.admin
        try f.policy("= 42", namespaces: #"["*"]"#, drill: """
                modifiers:
                  - conditions: {groupResource: deployments.apps, resourceNameRegex: "^n8n$"}
                    patches:
                      - {operation: add, path: /spec/template/spec/containers/0/env/-, value: '{"name": "N8N_DISABLE_PRODUCTION_MAIN_PROCESS", "value": "true"}'}
            """)
        let mark = try f.api.writes().count
        let (st, out) = try f.contained("the * drill") { try f.verify(["--keep"]) }
        print(out)
        #expect(st == 0 && out.contains("drill of n8n-prod PASSED"), "\(out)")
        let scratch = try f.drillNamespaces().sorted()
        #expect(scratch.count == 2, "n8n-prod and keycloak, each into its own: \(scratch)")
        defer { for ns in scratch { try? k.delete(apiVersion: "v1", kind: "Namespace", name: ns) } }

        // Nothing went into the live namespaces; no cluster-scoped object came back.
        #expect(try k.list(apiVersion: "apps/v1", kind: "Deployment", namespace: "n8n-prod").isEmpty)
        #expect(try k.get(apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", name: "prod-admin") == nil)
        #expect(try k.get(apiVersion: "v1", kind: "Namespace", name: "keycloak") == nil, "no namespace of the backup was recreated")
        var deployments: [String: [String: Any]] = [:]
        for ns in scratch {
            for d in try k.list(apiVersion: "apps/v1", kind: "Deployment", namespace: ns) {
                deployments[(d["metadata"] as? [String: Any])?["name"] as? String ?? ""] = d
            }
            // The only database is drctl's recovery Cluster; none of production's CNPG-made objects.
            for c in try k.list(apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", namespace: ns) {
                let spec = c["spec"] as? [String: Any] ?? [:]
                #expect((spec["bootstrap"] as? [String: Any])?["recovery"] != nil && spec["backup"] == nil, "\(c)")
            }
            #expect(try k.list(apiVersion: "postgresql.cnpg.io/v1", kind: "ScheduledBackup", namespace: ns).isEmpty)
            #expect(try k.list(apiVersion: "v1", kind: "PersistentVolumeClaim", namespace: ns).isEmpty)
            #expect(try k.get(apiVersion: "v1", kind: "Secret", namespace: ns, name: "app-db-superuser").map { ($0["data"] as? [String: Any])?["password"] as? String } != "cHJvZHVjdGlvbg==")
            // The only database pod is the one CNPG's operator made for the recovery Cluster, not production's restored.
            let pod = try k.get(apiVersion: "v1", kind: "Pod", namespace: ns, name: "app-db-1")
            #expect(pod.map { (($0["metadata"] as? [String: Any])?["labels"] as? [String: String])?["velero.io/restore-name"] == nil } ?? true, "\(pod ?? [:])")
            // Sealed: Pod Security and a default-deny NetworkPolicy.
            let labels = (try k.get(apiVersion: "v1", kind: "Namespace", name: ns)?["metadata"] as? [String: Any])?["labels"] as? [String: String] ?? [:]
            #expect(labels["pod-security.kubernetes.io/enforce"] == "baseline", "\(labels)")
            let seal = try #require(try k.get(apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", namespace: ns, name: "drctl-drill-seal"))
            #expect(((seal["spec"] as? [String: Any])?["policyTypes"] as? [String]) == ["Ingress", "Egress"])
            // The recovery Cluster's pods reach the API server's endpoints (the kubernetes
            // EndpointSlice: this server's address and port) and no other address.
            if let recovery = try k.get(apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", namespace: ns, name: "drctl-drill-recovery-app-db") {
                let egress = (recovery["spec"] as? [String: Any])?["egress"] as? [[String: Any]] ?? []
                #expect(egress.allSatisfy { ($0["to"] as? [Any])?.isEmpty == false }, "no egress rule without a destination: \(egress)")
                let api = try #require(egress.last)
                #expect("\(api["to"] ?? "")".contains("127.0.0.1/32") && (api["ports"] as? [[String: Any]])?.compactMap { $0["port"] as? Int } == [f.api.port],
                        "\(api)")
            }
        }
        #expect(Set(deployments.keys) == ["n8n", "keycloak"], "the impostor is refused by admission: \(deployments.keys)")
        for ns in scratch {
            #expect(try k.list(apiVersion: "v1", kind: "ReplicationController", namespace: ns).isEmpty, "the impostor ReplicationController is refused too")
            // No pod with CNPG's labels but the one CNPG's operator made for the recovery Cluster.
            let posing = try k.list(apiVersion: "v1", kind: "Pod", namespace: ns).filter {
                let labels = ($0["metadata"] as? [String: Any])?["labels"] as? [String: String] ?? [:]
                return labels.keys.contains { $0.hasPrefix("cnpg.io/") } && labels["velero.io/restore-name"] != nil
            }
            #expect(posing.isEmpty, "\(posing)")
        }
        for ns in scratch {
            let policies = try k.list(apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", namespace: ns).compactMap { ($0["metadata"] as? [String: Any])?["name"] as? String }
            #expect(!policies.contains("allow-all-egress"), "production's NetworkPolicies would add up with the seal: \(policies)")
        }
        let env = ((((deployments["n8n"]?["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])?["containers"] as? [[String: Any]])?.first?["env"] as? [[String: Any]] ?? []
        #expect(env.contains { $0["name"] as? String == "N8N_DISABLE_PRODUCTION_MAIN_PROCESS" && $0["value"] as? String == "true" }, "the policy's modifier: \(env)")
        let cron = try #require(try scratch.lazy.compactMap { try k.get(apiVersion: "batch/v1", kind: "CronJob", namespace: $0, name: "n8n-prune") }.first)
        #expect((cron["spec"] as? [String: Any])?["suspend"] as? Bool == true, "restored CronJobs are suspended: \(cron)")

        // Each namespace was sealed before the Restore was created (by the server's write log).
        let writes = try f.api.writes().dropFirst(mark)
        let restoreAt = try #require(writes.firstIndex { $0["resource"] as? String == "restores" && $0["verb"] as? String == "create" })
        for ns in scratch {
            let sealedAt = writes.firstIndex { $0["resource"] as? String == "networkpolicies" && $0["namespace"] as? String == ns }
            #expect(sealedAt.map { $0 < restoreAt } == true, "\(ns) sealed before the Restore")
        }
        #expect(out.contains("sealed: network: default deny") && out.contains("sealed: velero: n8n-prod restored into drill-n8n-prod-"), "\(out)")
        #expect(out.contains("app-db: recovery Cluster created in \(try #require(deployments["n8n"]?["metadata"] as? [String: Any])["namespace"] ?? "")"),
                "the recovery Cluster goes where n8n-prod was restored: \(out)")
        // `restore --namespace` of a backup of several namespaces: refused, nothing made.
        let (rst, rout) = try f.restore(into: "everything-restored")
        #expect(rst != 0 && rout.contains("--namespace restores one"), "\(rout)")
        #expect(try k.get(apiVersion: "v1", kind: "Namespace", name: "everything-restored") == nil)
        // The evidence in the bucket records the seal.
        var keys: [String] = []
        try f.s3.listObjects(bucket: f.bucket, prefix: "drctl/evidence/n8n-prod/") { keys += $0.objects.map(\.key) }
        var bytes: [UInt8] = []
        try f.s3.getObject(S3URL(bucket: f.bucket, key: try #require(keys.max()))) { bytes += $0 }
        let evidence = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        let sealed = evidence["sealed"] as? [String] ?? []
        #expect(sealed.contains { $0.hasPrefix("network: default deny") } && sealed.contains { $0.contains("CronJobs suspended, and 1 rule(s) of the policy") }
                && sealed.contains { $0.contains("keycloak restored into drill-n8n-prod-") }, "\(sealed)")
    }

    /// On an API server where no Velero or CNPG controller acts (as on the real one this was
    /// first tried on), nothing the drill waits for ever happens: it fails at its RTO deadline,
    /// naming what it waited for, tears down at once (a Restore Velero never started writes
    /// nothing) and leaves nothing behind.
    @Test func aDrillWhoseControllersNeverActFailsAtItsRTO() throws {
        let f = try ClusterFixture(rgw: rgw, bucket: "stuckdrill", running: [])
        try f.policy("= 42", rto: "15s")
        let started = Date()
        let (st, out) = try f.contained("a drill nothing acts on") { try f.verify() }
        let took = Date().timeIntervalSince(started)
        print(out)
        #expect(st == 1 && out.contains("not ready within the RTO objective 15s"), "\(out)")
        #expect(out.contains("Restore velero/drill-n8n-prod-"), "the Restore it waited for is named: \(out)")
        #expect(out.contains("Velero has not started restore"), "\(out)")
        #expect(took >= 15 && took < 45, "ended \(Int(took)) s after it started, for an RTO of 15 s")
        let left = try f.drillNamespaces()
        #expect(left.isEmpty, "\(left)")
    }

    /// A backup holding a Service named as the recovery Cluster's `-rw` one, without CNPG's
    /// label (so the Restore's selector lets it through), selecting pods of its choosing: the
    /// checks would trust whatever answers there. drctl checks only through a Service the
    /// recovery Cluster owns, and fails the drill naming it otherwise.
    @Test func aRestoredServicePosingAsTheDatabasesIsNotTrusted() throws {
        let f = try ClusterFixture(rgw: rgw, bucket: "posingsvc")
        var items = ClusterFixture.items(bucket: f.bucket)
        items["services/namespaces/n8n-prod/app-db-rw.json"] =
            #"{"apiVersion":"v1","kind":"Service","metadata":{"name":"app-db-rw","namespace":"n8n-prod"},"spec":{"ports":[{"port":5432}],"selector":{"app":"n8n"}}}"#
        try f.putVeleroTarball(try VeleroBucketTests.tarball(extra: items, base: false))
        try f.policy("= 42")
        let (st, out) = try f.contained("a drill of a backup with a posing Service") { try f.verify() }
        #expect(st == 1 && out.contains("Service drill-n8n-prod-") && out.contains("/app-db-rw is not the recovery Cluster's"), "\(out)")
        let left = try f.drillNamespaces()
        #expect(left.isEmpty, "\(left)")
    }
}

import Foundation
import Kube
import ObjectStore
import Testing
import TestSupport

/// `drctl rehearse` with the site gone: three workloads (two CNPG clusters archiving through real
/// barman-cloud into one RGW, one namespace-only Velero policy) copied to a second RGW, the
/// first RGW stopped, every workload brought back from the copy alone.
@Suite(.serialized) struct SiteRehearsalTests {
    @Test func theSiteComesBackFromItsCopyWithThePrimaryStopped() throws {
        let primary = try RGW.startPrivate()
        defer { primary.stop() }
        let offsite = try RGW.get()
        let app = try ArchivedDatabase(rgw: primary, bucket: "site")
        let auth = try ArchivedDatabase(rgw: primary, bucket: "site", server: "auth-db", sharing: app.bucket)
        // auth's rows differ from app's: each check (count * 1000 + max id) proves its own database came back exactly.
        _ = try auth.psql("insert into t(id) select generate_series(43, 50)")
        try auth.switchAndWaitArchived()
        // n8n-prod: namespaces only, a Velero backup of them in the same bucket.
        try ClusterFixture.putVeleroBackup(app.s3, bucket: app.bucket, name: VeleroBucketTests.scheduledName())

        let copyS3 = try offsite.client()
        let copyBucket = try offsite.bucket(copyS3, "site-copy")
        let secrets = app.work + "/secrets", policies = app.work + "/policies"
        try offsite.writeKeys(to: secrets + "/offsite-keys")
        try FileManager.default.createDirectory(atPath: policies, withIntermediateDirectories: true)
        func database(_ name: String, _ cluster: String, rows: Int) -> String {
            RGW.appPolicy(cluster: cluster, name: name, rpo: "24h", rto: "30m", spec: """
                  drill:
                    schedule: "0 5 * * *"
                    checks:
                      - sql: {cluster: \(cluster), database: postgres, query: "select count(*) * 1000 + max(id) from t", expect: "= \(rows * 1000 + rows)"}
                ---

                """)
        }
        try (app.rgw.objectStorePolicy(bucket: app.bucket, extra: "  copies: [{to: offsite}]\n")
             + offsite.offsitePolicy(bucket: copyBucket, secretName: "offsite-keys") + "---\n"
             + database("app", "app-db", rows: 42) + database("auth", "auth-db", rows: 50)
             + RGW.namespacePolicy(rto: "20m", spec: """
                 dependsOn: [app]
                 drill:
                   schedule: "0 6 * * *"
                   checks:
                     - resourceCount: {kind: Deployment, min: 1}
               ---

               """)
             + """
             apiVersion: drctl.dev/v1alpha1
             kind: Rehearsal
             metadata: {name: site}
             spec: {from: offsite, rto: 1h, parallel: 2}

             """).write(toFile: policies + "/p.yaml", atomically: true, encoding: .utf8)
        var env = app.drctlEnvironment   // the primary's keys in the environment: the rehearsal must not need them
        env["DRCTL_SECRETS_DIR"] = secrets
        let (cst, copied) = try run(drctlBinary, ["copy", "--policies", policies], env: env)
        try #require(cst == 0, "\(copied)")

        primary.stop()   // the site is gone
        let rehearse = ["rehearse", "--from", "offsite", "--policies", policies, "--scratch-dir", app.work + "/scratch"]
        var (st, out) = try run(drctlBinary, rehearse, env: env)
        print("$ drctl rehearse  # the primary's RGW stopped\n" + out)
        try #require(st == 0, "\(out)")
        #expect(out.contains("site RTO") && out.contains(": met (site objective 1h, largest workload objective 30m)") && out.contains("critical path: "), "\(out)")
        #expect(out.contains("check passed: sql app-db/postgres: select count(*) * 1000 + max(id) from t = 42042 (got 42042")
                && out.contains("check passed: sql auth-db/postgres: select count(*) * 1000 + max(id) from t = 50050 (got 50050")
                && out.contains("check passed: resourceCount Deployment >= 1"),
                "each workload restored exactly from the copy: \(out)")
        #expect(!out.contains(primary.endpoint), "nothing of the primary's was asked for: \(out)")
        var (jst, json) = try run(drctlBinary, rehearse + ["-o", "json", "--quiet"], env: env)
        try #require(jst == 0, "\(json)")
        var e = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], "\(json)")
        var ws = try #require(e["workloads"] as? [[String: Any]])
        #expect(e["result"] as? String == "passed" && ws.count == 3 && ws.allSatisfy { $0["result"] as? String == "passed" }, "\(json)")
        func w(_ name: String) -> [String: Any] { ws.first { $0["workload"] as? String == name } ?? [:] }
        let site = try #require(e["siteRTOSeconds"] as? Double)
        #expect(site == ws.compactMap { $0["healthyAfter"] as? Double }.max(), "the site is back when its last workload is")
        // n8n-prod depends on app: it starts once app is healthy, and its path goes through app.
        #expect(w("n8n-prod")["waitedFor"] as? String == "app" && (w("n8n-prod")["startedAfter"] as? Double ?? 0) >= (w("app")["healthyAfter"] as? Double ?? .infinity),
                "\(json)")
        let path = try #require(e["criticalPath"] as? [String])
        #expect(path.last == ws.max { ($0["healthyAfter"] as? Double ?? 0) < ($1["healthyAfter"] as? Double ?? 0) }?["workload"] as? String && e["criticalPhase"] is String,
                "\(json)")
        for name in ["app", "auth"] {
            let rpo = try #require(w(name)["rpoSeconds"] as? Double, "what the copy alone reaches: \(json)")
            #expect(rpo >= 0 && rpo < 3600)
        }
        // Its record and each drill's evidence went to the copy, sealed.
        var keys: [String] = []
        try copyS3.listObjects(bucket: copyBucket, prefix: "drctl/") { keys += $0.objects.map(\.key) }
        #expect(keys.filter { $0.hasPrefix("drctl/rehearsals/") }.count == 2 && ["app", "auth", "n8n-prod"].allSatisfy { w in keys.contains { $0.hasPrefix("drctl/evidence/\(w)/") } },
                "\(keys)")

        // One workload's copy damaged: auth's base backup data no longer unpacks. The rehearsal
        // fails naming it, and still brings back and reports the others.
        var data: [String] = []
        try copyS3.listObjects(bucket: copyBucket, prefix: "cnpg/auth-db/base/") { data += $0.objects.map(\.key).filter { $0.contains("/data.tar") } }
        for k in data { try copyS3.putObject(S3URL(bucket: copyBucket, key: k), bytes: Array("not a tar".utf8)) }
        try #require(!data.isEmpty)
        (st, out) = try run(drctlBinary, rehearse, env: env)
        print("$ drctl rehearse  # auth-db's base backup damaged on the copy\n" + out)
        #expect(st == 1 && out.contains("NOT BACK: auth did not come back") && out.contains("\nauth: "), "\(out)")
        (jst, json) = try run(drctlBinary, rehearse + ["-o", "json", "--quiet"], env: env)
        e = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], "\(json)")
        ws = try #require(e["workloads"] as? [[String: Any]])
        #expect(jst == 1 && e["result"] as? String == "failed" && w("auth")["result"] as? String == "failed"
                && w("app")["result"] as? String == "passed" && w("n8n-prod")["result"] as? String == "passed", "\(json)")

        #expect(((try? FileManager.default.contentsOfDirectory(atPath: app.work + "/scratch")) ?? []).isEmpty, "no scratch restore left behind")

        // The namespace-only workload into a new cluster (the Kubernetes API test server), whose
        // Velero reads the copy: restored into a sealed scratch namespace, checked, deleted.
        let api = try KubeAPI(controllers: offsite, admission: packageRoot.appendingPathComponent("deploy/admission.yaml").path)
        let kubeconfig = try api.kubeconfig("token")
        let admin = try KubeClient(config: KubeConfig.resolve(kubeconfig: kubeconfig, context: nil, namespace: nil))
        for ns in ["velero", "drctl"] { _ = try admin.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": ns]]) }
        _ = try admin.create(["apiVersion": "velero.io/v1", "kind": "BackupStorageLocation", "metadata": ["name": "default", "namespace": "velero"],
                              "spec": ["provider": "aws", "objectStorage": ["bucket": copyBucket, "prefix": "velero"]]])
        let (kst, kout) = try run(drctlBinary, ["rehearse", "n8n-prod", "--mode", "cluster", "--kubeconfig", kubeconfig, "--policies", policies, "-o", "json", "--quiet"], env: env)
        let k = try #require(try JSONSerialization.jsonObject(with: Data(kout.utf8)) as? [String: Any], "\(kout)")
        #expect(kst == 0 && k["mode"] as? String == "cluster" && k["result"] as? String == "passed", "\(kout)")
        let left = try admin.list(apiVersion: "v1", kind: "Namespace").compactMap { ($0["metadata"] as? [String: Any])?["name"] as? String }.filter { $0.hasPrefix("drill-") }
        #expect(left.isEmpty, "the scratch namespaces are gone: \(left)")

        // drctl serve reads the sealed records from the copy: the newest whole-site rehearsal
        // failed (auth did not come back), the site RTO is the newest one that passed, and the
        // cluster rehearsal of n8n-prod alone does not speak for the site.
        // A record written by whoever holds the copy's keys, unsealed, saying the site came back in a second.
        let forged = #"{"id":"20991231T000000Z-1","from":"offsite","mode":"host","host":"x","startedAt":"2099-12-31T00:00:00Z","finishedAt":"2099-12-31T00:00:01Z","result":"passed","siteRTOSeconds":1,"siteRTOObjectiveSeconds":3600,"largestWorkloadRTOObjectiveSeconds":1,"parallel":1,"criticalPath":[],"workloads":[{"workload":"app","result":"passed","startedAfter":0,"healthyAfter":1,"rtoSeconds":1,"rtoObjectiveSeconds":1,"rpoObjectiveSeconds":1,"phases":{},"dependsOn":[]},{"workload":"auth","result":"passed","startedAfter":0,"healthyAfter":1,"rtoSeconds":1,"rtoObjectiveSeconds":1,"rpoObjectiveSeconds":1,"phases":{},"dependsOn":[]},{"workload":"n8n-prod","result":"passed","startedAfter":0,"healthyAfter":1,"rtoSeconds":1,"rtoObjectiveSeconds":1,"rpoObjectiveSeconds":1,"phases":{},"dependsOn":[]}]}"#
        try copyS3.putObject(S3URL(bucket: copyBucket, key: "drctl/rehearsals/20991231T000000Z-1.json"), bytes: Array(forged.utf8))
        let serve = try ServeTests.Service(["--policies", policies, "--catalog", app.work + "/serve.sqlite", "--scratch-dir", app.work + "/scratch"],
                                           env: env, log: app.work + "/serve.log")
        let metrics = try serve.get("/metrics").1
        #expect(try serve.metric("drctl_site_rehearsal_last_success{from=\"offsite\"}") == 0, "\(metrics)")
        #expect(try serve.metric("drctl_site_rto_objective_seconds{from=\"offsite\"}") == 3600)
        let exported = try #require(try serve.metric("drctl_site_rto_seconds{from=\"offsite\"}"))
        #expect(exported > 0 && exported < 600, "the newest passed whole-site rehearsal's site RTO: \(exported)")
        #expect(try serve.metric("drctl_site_rehearsal_last_success_timestamp_seconds{from=\"offsite\"}") != nil)
        #expect(try serve.metric("drctl_unauthenticated_records{kind=\"rehearsal\"}") == 1, "the forged record is named, not taken: \(metrics)")
    }
}

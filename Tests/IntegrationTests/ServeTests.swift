import Foundation
import Testing
import ObjectStore
import TestSupport

/// `drctl serve` against real RGW, PostgreSQL 15 and barman-cloud: scheduled catalog syncs and
/// host drills, /metrics (checked with promtool), the JSON API, the status page, and SIGTERM
/// during a drill.
@Suite(.serialized) struct ServeTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    /// A running `drctl serve`, its log, and GETs against it.
    final class Service {
        let pid: pid_t
        let log: String
        var port = 0
        init(_ args: [String], env: [String: String], log: String) throws {
            self.log = log
            pid = try spawn(drctlBinary, ["serve", "--listen", "127.0.0.1:0"] + args, env: env, output: log)
            for _ in 0..<200 {
                if let line = text().split(separator: "\n").first(where: { $0.contains("listening on 127.0.0.1:") }),
                   let p = Int(line.split(separator: ":").last?.split(separator: ";").first ?? "") {
                    port = p
                    return
                }
                usleep(50_000)
            }
            kill(pid, SIGKILL); _ = try? reap(pid)
            throw FixtureError(description: "drctl serve did not start: \(text())")
        }
        deinit { if kill(pid, 0) == 0 { kill(pid, SIGKILL); _ = try? reap(pid, within: 30) } }
        func text() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        func get(_ path: String) throws -> (Int, String) {
            let (st, out) = try run("/usr/bin/curl", ["-s", "-m", "20", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"])
            guard st == 0, let nl = out.lastIndex(of: "\n"), let code = Int(out[out.index(after: nl)...]) else { throw FixtureError(description: "GET \(path): \(out)") }
            return (code, String(out[..<nl]))
        }
        /// The value of one sample in /metrics, e.g. `drctl_drill_runs_total{workload="app",result="passed"}`.
        func metric(_ series: String) throws -> Double? {
            let (_, body) = try get("/metrics")
            return body.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
    }

    static func policy(_ db: ArchivedDatabase, dir: String, drillSchedule: String, rpo: String = "1h") throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try (db.rgw.objectStorePolicy(bucket: db.bucket) + RGW.appPolicy(cluster: "app-db", rpo: rpo, rto: "10m") + """
              drill:
                schedule: "\(drillSchedule)"
                checks:
                  - sql: {cluster: app-db, database: postgres, query: "select count(*) from t", expect: "= 42"}
            """).write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
    }

    @Test func serveDrillsOnScheduleAndExportsMetrics() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "serve")
        let dir = db.work + "/policies", scratch = db.work + "/scratch"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        try Self.policy(db, dir: dir, drillSchedule: "*/10 * * * * *")
        let svc = try Service(["--policies", dir, "--scratch-dir", scratch, "--sync-schedule", "*/5 * * * * *",
                               "--runbooks", packageRoot.appendingPathComponent("runbooks").path], env: db.drctlEnvironment, log: db.work + "/serve.log")

        // At least two scheduled drills, both passed, seen in /metrics.
        let deadline = Date().addingTimeInterval(120)
        while try (svc.metric(#"drctl_drill_runs_total{workload="app",result="passed"}"#) ?? 0) < 2 && Date() < deadline { usleep(500_000) }
        let (mst, metrics) = try svc.get("/metrics")
        print(metrics)
        #expect(mst == 200)
        #expect(try svc.metric(#"drctl_drill_runs_total{workload="app",result="passed"}"#) ?? 0 >= 2, "\(svc.text())")
        #expect(try svc.metric(#"drctl_drill_last_success{workload="app"}"#) == 1)
        #expect(try svc.metric(#"drctl_rpo_objective_seconds{workload="app"}"#) == 3600)
        #expect(try svc.metric(#"drctl_wal_gaps{workload="app",cluster="app-db"}"#) == 0)
        #expect(try svc.metric(#"drctl_object_store_up{store="rgw"}"#) == 1)
        let rpo = try #require(try svc.metric(#"drctl_rpo_seconds{workload="app"}"#))
        #expect(rpo >= 0 && rpo < 600, "measured RPO \(rpo)")
        let drillRTO = try #require(try svc.metric(#"drctl_drill_last_duration_seconds{workload="app"}"#))
        #expect(drillRTO > 0 && drillRTO < 600)
        // promtool reads the exposition without a complaint.
        let file = db.work + "/metrics.txt"
        try metrics.write(toFile: file, atomically: true, encoding: .utf8)
        let (pst, pout) = try run("/bin/sh", ["-c", "promtool check metrics < \(file)"])
        #expect(pst == 0 && pout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "promtool check metrics: \(pout)")

        // Health, the API and the status page.
        #expect(try svc.get("/healthz").0 == 200)
        let (rst, rbody) = try svc.get("/readyz")
        #expect(rst == 200, "\(rbody)")
        let (wst, wbody) = try svc.get("/api/v1/workloads")
        let workloads = try #require(try JSONSerialization.jsonObject(with: Data(wbody.utf8)) as? [[String: Any]], "\(wbody)")
        #expect(wst == 200 && workloads.first?["workload"] as? String == "app" && workloads.first?["status"] as? String == "PROTECTED", "\(wbody)")
        let (bst, bbody) = try svc.get("/api/v1/workloads/app/backups")
        #expect(bst == 200 && bbody.contains("\"kind\" : \"cnpg\""), "\(bbody)")
        #expect(try svc.get("/api/v1/workloads/nope/backups").0 == 404)
        let (dst, dbody) = try svc.get("/api/v1/drills")
        let drills = try #require(try JSONSerialization.jsonObject(with: Data(dbody.utf8)) as? [[String: Any]])
        #expect(dst == 200 && drills.count >= 2)
        let (pst2, page) = try svc.get("/")
        #expect(pst2 == 200 && page.contains(#"data-workload="app" data-status="protected""#) && page.contains(#"<svg class="timeline" data-workload="app""#))
        let id = try #require(drills.first?["id"] as? String)
        let (dpst, dpage) = try svc.get("/drills/\(id)")
        #expect(dpst == 200 && dpage.contains("RTO phases") && dpage.contains("got 42, expected = 42"))
        let (rbst, runbook) = try svc.get("/runbooks/DrctlWALGap.md")
        #expect(rbst == 200 && runbook.contains("WAL"))
        #expect(try svc.get("/runbooks/..%2FPackage.swift").0 == 404)

        print(svc.text())   // the service's own log, in the test log
        // SIGTERM during a drill: out within the grace period, the drill torn down.
        let start = Date()
        while Date().timeIntervalSince(start) < 60 {
            let inScratch = (try? FileManager.default.contentsOfDirectory(atPath: scratch)) ?? []
            if inScratch.contains(where: { $0.hasPrefix("drctl-drill-") }) { break }
            usleep(20_000)
        }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: scratch)) ?? []).contains { $0.hasPrefix("drctl-drill-") }, "a drill is running")
        let t0 = Date()
        kill(svc.pid, SIGTERM)
        let raw = try reap(svc.pid)
        let took = Date().timeIntervalSince(t0)
        #expect(exitCode(raw) == 0, "exit status \(raw): \(svc.text().suffix(2000))")
        #expect(took < 30, "stopped in \(took)s")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: scratch)) ?? []).isEmpty, "scratch left behind")
        let (_, ps) = try run("/bin/sh", ["-c", "ps -eo args | grep -c '[p]ostgres -D \(scratch)' || true"])
        #expect(ps.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "postgres left running")
    }

    /// The alert loop: real scrapes of `drctl serve` — healthy, then with WAL archiving stopped at
    /// the source, then after a drill failed — fed to promtool with the rules `drctl render`
    /// makes for the same policy: nothing fires, then DrctlWALArchivingStale, then
    /// DrctlRestoreDrillFailed, each with its runbook_url.
    /// One undecodable evidence object and one unreachable object store hide nothing: every
    /// workload stays on the page and in the API (the unreachable store's as UNKNOWN, with the
    /// reason), the bad object is skipped and counted, and the service stays ready.
    @Test func aDamagedEvidenceObjectOrAnUnreachableStoreHidesNothing() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "serverobust")
        let dir = db.work + "/policies"
        try Self.policy(db, dir: dir, drillSchedule: "0 0 1 1 *")
        try db.s3.putObject(S3URL(bucket: db.bucket, key: "drctl/evidence/app/20991231T000000Z-bad.json"), bytes: Array("{not evidence".utf8))
        let dead = try freePort()
        try """
            apiVersion: drctl.dev/v1alpha1
            kind: ObjectStore
            metadata: {name: offline}
            spec: {endpoint: "http://127.0.0.1:\(dead)", bucket: gone, credentials: {secretName: s3}}
            ---
            apiVersion: drctl.dev/v1alpha1
            kind: BackupPolicy
            metadata: {name: ghost}
            spec:
              objectStore: offline
              namespaces: [ghost]
              objectives: {rpo: 1h, rto: 1h}
              cnpg: [{cluster: ghost-db, baseBackup: {schedule: "0 0 4 * * *"}, retention: 7d}]
            """.write(toFile: dir + "/offline.yaml", atomically: true, encoding: .utf8)
        let env = db.drctlEnvironment
        let svc = try Service(["--policies", dir, "--sync-schedule", "*/2 * * * * *", "--idle-timeout", "1"], env: env, log: db.work + "/serve.log")
        try waitUntil(600, every: 100_000) { try svc.metric(#"drctl_object_store_up{store="offline"}"#) == 0 && (try svc.metric("drctl_evidence_undecodable_objects") ?? 0) == 1 }
        let (rst, ready) = try svc.get("/readyz")
        #expect(rst == 200, "a store outage leaves the service ready: \(ready)")
        let (_, api) = try svc.get("/api/v1/workloads")
        let statuses = try #require(try JSONSerialization.jsonObject(with: Data(api.utf8)) as? [[String: Any]])
        let byName = Dictionary(uniqueKeysWithValues: statuses.map { ($0["workload"] as? String ?? "", $0) })
        #expect(Set(byName.keys) == ["app", "ghost"], "\(api)")
        #expect(byName["ghost"]?["status"] as? String == "UNKNOWN" && "\(byName["ghost"]?["reasons"] ?? "")".contains("offline"), "\(api)")
        #expect(byName["app"]?["status"] as? String != "UNKNOWN", "\(api)")
        let (_, page) = try svc.get("/")
        #expect(page.contains("ghost") && page.contains("UNKNOWN") && page.contains("do not decode"), "\(page.prefix(3000))")
        #expect(svc.text().contains("evidence drctl/evidence/app/20991231T000000Z-bad.json does not decode: skipped"), "\(svc.text())")
        let (hst, _) = try svc.get("/healthz")
        #expect(hst == 200)
        // An idle connection is closed by the server after --idle-timeout (Hummingbird keeps it forever by default).
        let (ist, idle) = try run("/usr/bin/python3", ["-c", """
            import socket, time
            s = socket.create_connection(("127.0.0.1", \(svc.port))); s.settimeout(10); t = time.time()
            print("closed" if s.recv(1) == b"" else "data", round(time.time() - t, 1))
            """])
        #expect(ist == 0 && idle.hasPrefix("closed"), "\(idle)")
    }

    /// `--auth kubernetes` with TLS: the page, drills, API and runbooks need a bearer token the
    /// API server accepts (TokenReview) of a user allowed `get` on drctl.dev/status
    /// (SubjectAccessReview), asked with deploy/rbac-serve.yaml's grants as drctl's service
    /// account; /metrics, /healthz and /readyz stay open; plaintext is not served.
    @Test func pagesNeedAKubernetesTokenAndRBAC() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "serveauth")
        let dir = db.work + "/policies"
        try Self.policy(db, dir: dir, drillSchedule: "0 0 1 1 *")
        let viewer = "viewer-\(UUID().uuidString.prefix(8))", stranger = "stranger-\(UUID().uuidString.prefix(8))"
        let rbac = db.work + "/rbac.yaml"
        let deploy = packageRoot.appendingPathComponent("deploy")
        try (String(contentsOf: deploy.appendingPathComponent("rbac-serve.yaml"), encoding: .utf8) + """

            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: ClusterRoleBinding
            metadata: {name: drctl-viewers}
            roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: drctl-viewer}
            subjects: [{kind: User, apiGroup: rbac.authorization.k8s.io, name: viewer}]
            """).write(toFile: rbac, atomically: true, encoding: .utf8)
        // Under deploy/'s admission policy as well: the API server admits reviews like any create.
        let api = try KubeAPI(rbac: rbac, admission: deploy.appendingPathComponent("admission.yaml").path, extraTokens: [viewer: "viewer", stranger: "stranger"])
        let svc = try Service(["--policies", dir, "--auth", "kubernetes", "--kubeconfig", try api.kubeconfig("serviceaccount"),
                               "--tls-cert", api.file("server.pem"), "--tls-key", api.file("server.key")],
                              env: db.drctlEnvironment, log: db.work + "/serve.log")
        func get(_ path: String, token: String?) throws -> Int {
            let (st, out) = try run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-m", "20", "-w", "%{http_code}", "--cacert", api.file("ca.pem")]
                                    + (token.map { ["-H", "Authorization: Bearer \($0)"] } ?? []) + ["https://127.0.0.1:\(svc.port)\(path)"])
            #expect(st == 0, "\(path): \(out)")
            return Int(out) ?? -1
        }
        for path in ["/", "/api/v1/workloads", "/api/v1/drills", "/api/v1/workloads/app/backups", "/drills/20261127T042000Z-1", "/runbooks/DrctlDrillFailing.md"] {
            #expect(try get(path, token: nil) == 401, "\(path) without a token")
            #expect(try get(path, token: "not-a-token") == 401, "\(path) with a token the API server does not know")
            #expect(try get(path, token: stranger) == 403, "\(path) for a user without the permission")
            #expect(try get(path, token: viewer) != 401 && (try get(path, token: viewer)) != 403, "\(path) for the viewer")
        }
        #expect(try get("/api/v1/workloads", token: viewer) == 200)
        for path in ["/metrics", "/healthz", "/readyz"] { #expect(try get(path, token: nil) == 200, "\(path) stays open") }
        let (plain, _) = try run("/usr/bin/curl", ["-s", "-m", "5", "-o", "/dev/null", "http://127.0.0.1:\(svc.port)/metrics"])
        #expect(plain != 0, "no plaintext HTTP beside TLS")
        #expect(!svc.text().contains(viewer) && !svc.text().contains(stranger), "tokens never reach the log")
        let reviews = try api.audit().filter { ["tokenreviews", "subjectaccessreviews"].contains($0["resource"] as? String ?? "") }
        #expect(!reviews.isEmpty && reviews.allSatisfy { $0["allowed"] as? Bool == true }, "drctl's account may ask: \(reviews)")
    }

    @Test func alertsFireFromRealScrapes() throws {
        try #require(FileManager.default.isExecutableFile(atPath: toolsPython), "no .venv-tools: run scripts/install-deps.sh")
        let db = try ArchivedDatabase(rgw: rgw, bucket: "alertloop")
        let dir = db.work + "/policies", scratch = db.work + "/scratch"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        try Self.policy(db, dir: dir, drillSchedule: "*/5 * * * * *", rpo: "5m")
        let svc = try Service(["--policies", dir, "--scratch-dir", scratch, "--sync-schedule", "*/2 * * * * *"], env: db.drctlEnvironment, log: db.work + "/serve.log")
        func waitFor(_ what: String, _ cond: () throws -> Bool) throws {
            let deadline = Date().addingTimeInterval(90)
            while try !cond() && Date() < deadline { usleep(300_000) }
            try #require(try cond(), "\(what): \(svc.text().suffix(3000))")
        }
        var cases: [[String: Any]] = []
        func scrape(_ name: String, eval: String, firing: [[String: Any]]) throws {
            let at = Date().timeIntervalSince1970
            let (st, body) = try svc.get("/metrics")
            try #require(st == 200)
            let file = db.work + "/\(name).txt"
            try body.write(toFile: file, atomically: true, encoding: .utf8)
            cases.append(["name": name, "metrics": file, "scrapedAt": at, "eval": eval, "firing": firing])
        }
        let passed = #"drctl_drill_runs_total{workload="app",result="passed"}"#
        try waitFor("a passed drill") { try (svc.metric(passed) ?? 0) >= 1 }
        try scrape("healthy", eval: "1m", firing: [])

        // WAL archiving stops at the source: new WAL is written, none reaches the bucket.
        let lastArchived = #"drctl_wal_last_archived_timestamp_seconds{workload="app",cluster="app-db"}"#
        let before = try #require(try svc.metric(lastArchived))
        _ = try db.psql("alter system set archive_command = '/bin/false'")
        _ = try db.psql("select pg_reload_conf()")
        usleep(500_000)
        _ = try db.psql("insert into t(id) values (43)")
        _ = try db.psql("select pg_switch_wal()")
        let syncs = #"drctl_catalog_last_sync_success_timestamp_seconds{store="rgw"}"#
        let syncedAt = Date().timeIntervalSince1970
        try waitFor("a catalog sync after the stop") { try (svc.metric(syncs) ?? 0) > syncedAt + 1 }
        #expect(try svc.metric(lastArchived) == before, "nothing new archived")
        try scrape("WAL archiving stopped", eval: "12m",
                   firing: [["alert": "DrctlWALArchivingStale", "labels": ["workload": "app", "cluster": "app-db", "severity": "critical", "namespace": "drctl"]]])

        // A drill fails: the base backup's data is damaged in the bucket.
        var keys: [String] = []
        try db.s3.listObjects(bucket: db.bucket, prefix: "cnpg/app-db/base/") { keys += $0.objects.map(\.key).filter { $0.hasSuffix("/data.tar.gz") } }
        let data = try #require(keys.first, "\(keys)")
        try db.s3.putObject(S3URL(bucket: db.bucket, key: data), bytes: Array("not gzip".utf8))
        let failed = #"drctl_drill_runs_total{workload="app",result="failed"}"#
        try waitFor("a failed drill") { try (svc.metric(failed) ?? 0) >= 1 }
        #expect(try svc.metric(#"drctl_drill_last_success{workload="app"}"#) == 0)
        try scrape("drill failed", eval: "1m",
                   firing: [["alert": "DrctlRestoreDrillFailed", "labels": ["workload": "app", "severity": "critical", "namespace": "drctl"]]])
        kill(svc.pid, SIGTERM)
        _ = try reap(svc.pid)

        let out = db.work + "/rendered"
        let (rst, rout) = try run(drctlBinary, ["render", dir, "--out", out])
        try #require(rst == 0, "\(rout)")
        let spec = db.work + "/loop.json"
        try JSONSerialization.data(withJSONObject: ["rules": out + "/prometheus/prometheusrule-drctl.yaml", "cases": cases]).write(to: URL(fileURLWithPath: spec))
        let (st, result) = try run(toolsPython, [packageRoot.appendingPathComponent("scripts/alert-loop").path, spec])
        print(result)
        #expect(st == 0 && result.contains("alert-loop: 3 cases"), "\(result)")
    }

    /// The status page in a real browser: headless Chromium loads it from the running service,
    /// takes a screenshot, and the rendered DOM has a row per workload with its traffic light,
    /// one SVG timeline per workload and a red gap where a WAL segment was removed.
    @Test func statusPageInHeadlessChromium() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"), "install chromium (scripts/install-deps.sh)")
        let db = try ArchivedDatabase(rgw: rgw, bucket: "statuspage")
        // More WAL, then one segment in the middle removed from the bucket.
        var segments: [String] = []
        for i in 0..<4 {
            _ = try db.psql("insert into t(id) values (\(100 + i))")
            segments.append(try db.psql("select pg_walfile_name(pg_switch_wal())"))
        }
        try rgw.waitArchived(segments.last!, s3: db.s3, bucket: db.bucket)
        let victim = segments[1]
        var keys: [String] = []
        try db.s3.listObjects(bucket: db.bucket, prefix: "cnpg/app-db/wals/") { keys += $0.objects.map(\.key) }
        let key = try #require(keys.first { $0.contains("/\(victim)") }, "\(victim) in \(keys)")
        try db.s3.deleteObject(S3URL(bucket: db.bucket, key: key))
        // A second workload: Velero only, one completed daily backup.
        let backup = VeleroBucketTests.scheduledName()   // three hours ago: within the 48 h RPO on any date
        try db.s3.putObject(S3URL(bucket: db.bucket, key: "velero/backups/\(backup)/\(backup).tar.gz"), bytes: try VeleroBucketTests.tarball())
        try db.s3.putObject(S3URL(bucket: db.bucket, key: "velero/backups/\(backup)/velero-backup.json"), bytes: VeleroBucketTests.backupJSON(backup, phase: "Completed"))

        let dir = db.work + "/policies"
        try Self.policy(db, dir: dir, drillSchedule: "0 6 * * *")
        try RGW.namespacePolicy(rpo: "48h").write(toFile: dir + "/n8n.yaml", atomically: true, encoding: .utf8)
        let svc = try Service(["--policies", dir, "--sync-schedule", "0 * * * *"], env: db.drctlEnvironment, log: db.work + "/serve.log")
        let deadline = Date().addingTimeInterval(60)
        while try (svc.metric(#"drctl_catalog_objects{store="rgw"}"#) ?? 0) == 0 && Date() < deadline { usleep(200_000) }

        let url = "http://127.0.0.1:\(svc.port)/"
        let artifacts = packageRoot.appendingPathComponent(".build/test-artifacts").path
        try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
        let shot = artifacts + "/status-page.png"
        unlink(shot)
        let profile = db.work + "/chromium"
        let flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--user-data-dir=\(profile)",
                     "--window-size=1280,1400"]
        let (sst, sout) = try run("/usr/bin/chromium", flags + ["--screenshot=\(shot)", url], env: ["HOME": db.work, "PATH": "/usr/bin:/bin"])
        #expect(sst == 0, "\(sout)")
        let size = (try? FileManager.default.attributesOfItem(atPath: shot)[.size] as? Int) ?? 0
        #expect(size > 10_000, "screenshot \(shot): \(size) bytes")
        print("status page screenshot: \(shot) (\(size) bytes)")
        let (dst, dom) = try run("/usr/bin/chromium", flags + ["--dump-dom", url], env: ["HOME": db.work, "PATH": "/usr/bin:/bin"])
        try #require(dst == 0, "\(dom)")
        // The DOM as the browser built it.
        let rows = dom.components(separatedBy: "<tr class=\"workload ").dropFirst().map { String($0.prefix(200)) }
        #expect(rows.count == 2, "\(rows)")
        #expect(rows.contains { $0.hasPrefix("broken\" data-workload=\"app\" data-status=\"broken\"") }, "\(rows)")
        #expect(rows.contains { $0.hasPrefix("protected\" data-workload=\"n8n-prod\" data-status=\"protected\"") }, "\(rows)")
        #expect(dom.contains("WAL segment \(victim) is missing"), "the reason is on the row")
        #expect(dom.components(separatedBy: "<svg class=\"timeline\"").count - 1 == 2, "one timeline per workload")
        #expect(dom.contains("<rect class=\"wal-gap\" data-missing=\"\(victim)\""), "the removed segment is a red gap")
        #expect(dom.contains("fill=\"#d1342f\""))
        #expect(dom.contains("runbook: <a href=\"runbooks/DrctlWALGap.md\">DrctlWALGap</a>"), "the row links the runbook of its alert")
    }

    /// The uptime report from a real drill and 30 days of RPO history (the hourly measurements
    /// drctl serve records, written here relative to now, with one 6-hour breach ten days ago),
    /// from `drctl report` and from /report in headless Chromium.
    @Test func theUptimeReportFromTheHistoryInHeadlessChromium() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"), "install chromium (scripts/install-deps.sh)")
        let db = try ArchivedDatabase(rgw: rgw, bucket: "report")
        let dir = db.work + "/policies"
        try Self.policy(db, dir: dir, drillSchedule: "0 6 * * *")
        let catalog = db.work + "/catalog.sqlite"
        let (vst, vout) = try run(drctlBinary, ["verify", "app", "--policies", dir, "--catalog", catalog, "--scratch-dir", db.work + "/scratch"], env: db.drctlEnvironment)
        #expect(vst == 0, "\(vout)")
        let script = """
            import sqlite3, sys, time
            con = sqlite3.connect(sys.argv[1]); now = time.time(); h = 3600
            for i in range(720, 0, -1):
                breach = 240 <= i < 246
                con.execute("INSERT INTO rpo_history (workload, measured_at, rpo_seconds, objective_seconds, status, evidence, reasons) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            ("app", now - i * h, 7200 if breach else 120, 3600, "AT RISK" if breach else "PROTECTED", None,
                             "WAL archiving of app-db stopped: the newest segment is 2h old" if breach else None))
            con.commit()
            """
        let (pst, pout) = try run("/usr/bin/python3", ["-c", script, catalog])
        try #require(pst == 0, "\(pout)")

        let (cst, cout) = try run(drctlBinary, ["catalog", "sync", "--policies", dir, "--catalog", catalog], env: db.drctlEnvironment)
        #expect(cst == 0, "\(cout)")
        let (rst, md) = try run(drctlBinary, ["report", "--policies", dir, "--catalog", catalog, "--skip-copies"], env: db.drctlEnvironment)
        #expect(rst == 0, "\(md)")
        print(md)
        #expect(md.contains("| app | 99.17 % | 1h | 1 (6h) | 1 / 1 |"), "\(md)")
        #expect(md.contains("WAL archiving of app-db stopped: the newest segment is 2h old"), "the longest breach's cause: \(md)")
        #expect(md.contains("| app | CNPG barman-cloud") && md.contains("| PROTECTED |"), "the guide's backup status table: \(md)")
        // 6 h of 30 days in breach: 99.17 %, the guide's phase 0 (95-96 %), short of phase 1 (99.5 %).
        #expect(md.contains("reaches the guide's Current (Phase 0) estimate (95-96%)") && md.contains("| Phase 1 Complete | 99.5% | not reached |"), "\(md)")

        let svc = try Service(["--policies", dir, "--catalog", catalog, "--sync-schedule", "0 * * * *"], env: db.drctlEnvironment, log: db.work + "/serve.log")
        let deadline = Date().addingTimeInterval(60)
        while try (svc.metric(#"drctl_catalog_objects{store="rgw"}"#) ?? 0) == 0 && Date() < deadline { usleep(200_000) }
        let url = "http://127.0.0.1:\(svc.port)/report"
        let artifacts = packageRoot.appendingPathComponent(".build/test-artifacts").path
        try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
        let shot = artifacts + "/report.png"
        unlink(shot)
        let flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--user-data-dir=\(db.work)/chromium",
                     "--window-size=1280,1300"]
        let (sst, sout) = try run("/usr/bin/chromium", flags + ["--screenshot=\(shot)", url], env: ["HOME": db.work, "PATH": "/usr/bin:/bin"])
        #expect(sst == 0, "\(sout)")
        print("report screenshot: \(shot) (\((try? FileManager.default.attributesOfItem(atPath: shot)[.size] as? Int) ?? 0) bytes)")
        let (dst, dom) = try run("/usr/bin/chromium", flags + ["--dump-dom", url], env: ["HOME": db.work, "PATH": "/usr/bin:/bin"])
        try #require(dst == 0, "\(dom)")
        #expect(dom.contains("<tr class=\"workload\" data-workload=\"app\"><td>app</td><td class=\"missed\">99.17 %</td>"), "\(dom.prefix(3000))")
        #expect(dom.components(separatedBy: "class=\"breach\"").count - 1 == 1, "one breach on the chart")
        #expect(dom.contains("<svg class=\"rto\"") && dom.contains("<svg class=\"uptime\""), "the RTO and uptime charts")
        #expect(dom.contains("Phase 2 Complete (99.9%)"))
    }

    /// CronJob mode: `drctl catalog sync` and `drctl verify` push to a real Prometheus
    /// Pushgateway, and neither erases the other's metrics.
    @Test func cronJobsPushToAPushgateway() throws {
        let gatewayBinary = "/usr/bin/prometheus-pushgateway"
        try #require(FileManager.default.isExecutableFile(atPath: gatewayBinary), "install prometheus-pushgateway (scripts/install-deps.sh)")
        let db = try ArchivedDatabase(rgw: rgw, bucket: "pushgw")
        let port = try freePort()
        let gw = try spawn(gatewayBinary, ["--web.listen-address=127.0.0.1:\(port)", "--persistence.file="], output: db.work + "/pushgateway.log")
        defer { kill(gw, SIGKILL); _ = try? reap(gw, within: 30) }
        let url = "http://127.0.0.1:\(port)"
        waitUntil(100, every: 100_000) { (try? run("/usr/bin/curl", ["-sf", url + "/-/ready"]))?.0 == 0 }
        let dir = db.work + "/policies", scratch = db.work + "/scratch"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        try Self.policy(db, dir: dir, drillSchedule: "0 6 * * *")
        let (sst, sout) = try run(drctlBinary, ["catalog", "sync", "--policies", dir, "--pushgateway", url], env: db.drctlEnvironment)
        #expect(sst == 0 && sout.contains("metrics pushed to \(url)"), "\(sout)")
        let (vst, vout) = try run(drctlBinary, ["verify", "app", "--policies", dir, "--scratch-dir", scratch, "--pushgateway", url, "--quiet"], env: db.drctlEnvironment)
        #expect(vst == 0, "\(vout)")
        let (_, metrics) = try run("/usr/bin/curl", ["-s", url + "/metrics"])
        func sample(_ name: String, _ labels: [String]) -> String? {
            metrics.split(separator: "\n").first { l in l.hasPrefix(name + "{") && labels.allSatisfy { l.contains($0) } && l.contains(#"job="drctl""#) }.map(String.init)
        }
        #expect(sample("drctl_drill_last_success", [#"workload="app""#])?.hasSuffix(" 1") == true, "\(metrics)")
        #expect(sample("drctl_catalog_objects", [#"store="rgw""#]) != nil, "the sync's store metrics survive the verify push")
        #expect(sample("drctl_catalog_last_sync_success_timestamp_seconds", [#"store="rgw""#]) != nil)
        #expect(sample("drctl_wal_gaps", [#"workload="app""#, #"cluster="app-db""#])?.hasSuffix(" 0") == true)
    }
}

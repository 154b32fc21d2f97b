import Foundation
import Testing
import TestSupport

/// The heartbeat on a real PostgreSQL 15 archiving through real barman-cloud: the rendered role
/// and table, drctl serve writing a row every second as a role that can only insert, a
/// point-in-time drill whose RPO is measured in the data, and a lost heartbeat that fails the
/// drill naming its seq.
@Suite(.serialized) struct HeartbeatTests {
    @Test func theRestoredDataSaysHowMuchCameBackAndWhatDidNot() throws {
        let db = try ArchivedDatabase(rgw: try RGW.get(), bucket: "heartbeat")
        let policies = db.work + "/policies", secrets = db.work + "/secrets"
        try FileManager.default.createDirectory(atPath: policies, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: secrets + "/app-db-heartbeat", withIntermediateDirectories: true)
        try "drctl_heartbeat".write(toFile: secrets + "/app-db-heartbeat/username", atomically: true, encoding: .utf8)
        try "hb-\(UInt32.random(in: 0...UInt32.max))".write(toFile: secrets + "/app-db-heartbeat/password", atomically: true, encoding: .utf8)
        try (db.rgw.objectStorePolicy(bucket: db.bucket) + RGW.appPolicy(cluster: "app-db", rpo: "1h", spec: """
                  heartbeat: {every: 1s, database: app, secretName: app-db-heartbeat, host: 127.0.0.1, port: \(db.port)}
              drill:
                schedule: "0 5 1 1 *"
                checks:
                  - sql: {cluster: app-db, database: postgres, query: "select count(*) from t", expect: ">= 42"}

            """)).write(toFile: policies + "/p.yaml", atomically: true, encoding: .utf8)
        var env = db.drctlEnvironment
        env["DRCTL_SECRETS_DIR"] = secrets

        // What render gives the cluster: the managed role, and the table's set-up run as its owner
        // (the role itself as CNPG would create it from spec.managed.roles).
        let rendered = db.work + "/rendered"
        let (rst, rout) = try run(drctlBinary, ["render", policies, "--out", rendered], env: env)
        try #require(rst == 0, "\(rout)")
        let patch = try String(contentsOfFile: rendered + "/cnpg/app-app-db-cluster-patch.yaml", encoding: .utf8)
        #expect(patch.contains("name: drctl_heartbeat") && patch.contains("login: true") && patch.contains("superuser: false")
                && patch.contains("name: app-db-heartbeat"), "\(patch)")
        // As CNPG makes it: database app owned by the application's role app (which owns its public schema).
        _ = try db.psql("create role app login nosuperuser; create role drctl_heartbeat login nosuperuser noinherit nocreatedb nocreaterole connection limit 2")
        _ = try db.psql("create database app owner app")
        func sql(_ user: String, _ text: String) throws -> (Int32, String) {
            try run("/usr/bin/psql", ["-X", "-h", "127.0.0.1", "-p", String(db.port), "-U", user, "-d", "app", "-v", "ON_ERROR_STOP=1", "-Atqc", text])
        }
        let (sst, sout) = try run("/usr/bin/psql", ["-X", "-h", "127.0.0.1", "-p", String(db.port), "-U", "postgres", "-d", "app", "-v", "ON_ERROR_STOP=1",
                                                   "-f", rendered + "/cnpg/app-app-db-heartbeat.sql"])
        try #require(sst == 0, "the rendered set-up runs: \(sout)")
        // The database's owner plants a function the trigger's lock call would pick from public if
        // its search_path let it: it would make app a superuser when the next heartbeat fires.
        let (pst, pout) = try sql("app", """
            create function public.pg_advisory_xact_lock(integer) returns void language sql as 'alter role app superuser';
            create function public.hashtext(text) returns integer language sql as 'select 1';
            """)
        #expect(pst == 0, "\(pout)")
        func count() throws -> Int { Int(try sql("postgres", "select count(*) from drctl.drctl_heartbeat").1.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 }

        let log = db.work + "/serve.log"
        let pid = try spawn(drctlBinary, ["serve", "--listen", "127.0.0.1:0", "--policies", policies, "--catalog", db.work + "/catalog.sqlite",
                                          "--scratch-dir", db.work + "/scratch"], env: env, output: log)
        defer { kill(pid, SIGTERM); _ = try? reap(pid, within: 30) }
        let beating = try waitUntil(100, every: 200_000) { try count() >= 6 }
        try #require(beating, "drctl serve writes a heartbeat every second: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")

        // drctl serve says it is writing.
        let serveLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let port = try #require(serveLog.firstMatch(of: /listening on 127\.0\.0\.1:(\d+)/).map { String($0.1) }, "\(serveLog)")
        let (mst, metrics) = try run("/usr/bin/curl", ["-s", "-m", "10", "http://127.0.0.1:\(port)/metrics"])
        #expect(mst == 0 && metrics.contains("drctl_heartbeat_up{workload=\"app\",cluster=\"app-db\"} 1")
                && metrics.contains("drctl_heartbeat_last_success_timestamp_seconds{workload=\"app\",cluster=\"app-db\"}"), "\(metrics)")

        #expect(try sql("postgres", "select rolsuper from pg_roles where rolname = 'app'").1.hasPrefix("f"), "the planted functions were never called")
        // Neither the database's owner nor the writer can replace, empty or read around the table.
        for (user, denied) in [("app", "drop table drctl.drctl_heartbeat"), ("app", "create table drctl.x(i int)"), ("app", "delete from drctl.drctl_heartbeat"),
                               ("app", "alter table drctl.drctl_heartbeat disable trigger drctl_heartbeat_stamp"),
                               ("drctl_heartbeat", "select count(*) from drctl.drctl_heartbeat"), ("drctl_heartbeat", "delete from drctl.drctl_heartbeat"),
                               ("drctl_heartbeat", "update drctl.drctl_heartbeat set seq = 1"), ("drctl_heartbeat", "truncate drctl.drctl_heartbeat")] {
            let (st, out) = try sql(user, denied)
            #expect(st != 0 && (out.contains("permission denied") || out.contains("must be owner")), "\(user): \(denied): \(out)")
        }
        // What the writer sends is not what the row says; a rolled-back insert leaves no gap.
        let (ist, iout) = try sql("drctl_heartbeat", "insert into drctl.drctl_heartbeat(seq, at, lsn) values (999999, '2000-01-01', '0/0')")
        #expect(ist == 0, "\(iout)")
        let (bst, bout) = try sql("drctl_heartbeat", "begin; insert into drctl.drctl_heartbeat default values; rollback;")
        #expect(bst == 0, "\(bout)")
        #expect(try sql("postgres", "select count(*) from drctl.drctl_heartbeat where seq = 999999 or at < '2001-01-01'").1.hasPrefix("0"), "the writer chooses nothing")

        // Two heartbeats a second apart; the target half-way between them: exactly the first comes back.
        _ = try waitUntil(50, every: 200_000) { try count() >= 12 }
        let row = try sql("postgres", "select seq, to_char(at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), extract(epoch from at) from drctl.drctl_heartbeat where seq = (select max(seq) - 3 from drctl.drctl_heartbeat)")
            .1.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|").map(String.init)
        let (seq, epoch) = (try #require(Int(row[0])), try #require(Double(row[2])))
        let next = try #require(Double(try sql("postgres", "select extract(epoch from at) from drctl.drctl_heartbeat where seq = \(seq + 1)").1.trimmingCharacters(in: .whitespacesAndNewlines)))
        let target = Date(timeIntervalSince1970: (epoch + next) / 2)
        let targetText = ISO8601DateFormatter.string(from: target, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withInternetDateTime, .withFractionalSeconds])
        try db.switchAndWaitArchived()
        let (vst, verify) = try run(drctlBinary, ["verify", "app", "--policies", policies, "--at", targetText, "--scratch-dir", db.work + "/scratch", "-o", "json", "--quiet"], env: env)
        try #require(vst == 0, "\(verify)")
        let drill = try #require(try JSONSerialization.jsonObject(with: Data(verify.utf8)) as? [[String: Any]]).first ?? [:]
        let database = (drill["databases"] as? [[String: Any]])?.first ?? [:]
        let heartbeat = try #require(database["heartbeat"] as? [String: Any], "\(verify)")
        #expect(heartbeat["newestSeq"] as? Int == seq && (heartbeat["gaps"] as? [Any])?.isEmpty == true,
                "exactly the heartbeat before the target, and no gap for the rolled-back insert: \(verify)")
        for c in drill["checks"] as? [[String: Any]] ?? [] where (c["name"] as? String ?? "").hasPrefix("heartbeat") {
            print("$ drctl verify app --at \(targetText)\n  [\(c["result"] ?? "")] \(c["name"] ?? ""): \(c["detail"] ?? "")")
        }
        let rpo = try #require(drill["rpoSeconds"] as? Double)
        #expect(abs(rpo - target.timeIntervalSince1970 + epoch) < 0.002, "the RPO is the target minus the newest restored heartbeat (\(rpo) s): \(verify)")

        // drctl restore says which heartbeat it brought back.
        let restored = try db.restoredRows(["app", "--policies", policies], at: targetText, env: env)
        #expect(restored.status == 0 && restored.output.contains("heartbeat: newest seq \(seq) at \(row[1])"), "\(restored.output)")

        // A committed heartbeat lost (deleted behind drctl's back, as a lost transaction would be):
        // the next drill fails naming its seq.
        kill(pid, SIGTERM)
        _ = try reap(pid, within: 30)
        let lost = seq - 2
        _ = try sql("postgres", "delete from drctl.drctl_heartbeat where seq = \(lost)")
        try db.switchAndWaitArchived()
        let (gst, gap) = try run(drctlBinary, ["verify", "app", "--policies", policies, "--scratch-dir", db.work + "/scratch"], env: env)
        #expect(gst == 1 && gap.contains("committed heartbeats missing below the newest") && gap.contains("seq \(lost):")
                && gap.contains("transactions that did not come back"), "\(gap)")
        // The table replaced by a view (what could run code when read): not read, the drill fails naming it.
        _ = try sql("postgres", "alter table drctl.drctl_heartbeat rename to beats; create view drctl.drctl_heartbeat as select * from drctl.beats")
        try db.switchAndWaitArchived()
        let (vwst, view) = try run(drctlBinary, ["verify", "app", "--policies", policies, "--scratch-dir", db.work + "/scratch"], env: env)
        #expect(vwst == 1 && view.contains("drctl.drctl_heartbeat is not the table the set-up made (v|postgres|"), "\(view)")
        print("$ drctl verify app  # a committed heartbeat lost\n" + gap.split(separator: "\n").filter { $0.contains("heartbeat") }.joined(separator: "\n"))
    }
}

import Foundation
import Testing
import Layout
import ObjectStore
import TestSupport

/// Point-in-time recovery end to end with real parts: PostgreSQL 15 archiving through real
/// barman-cloud 3.19.1 into the real RGW, then `drctl restore` and `drctl verify`. Every row is
/// committed in its own transaction and its exact commit time is read back
/// (track_commit_timestamp), so each restore can be held to "exactly the rows committed at or
/// before T".
@Suite(.serialized) struct RestoreTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    static let barmanBin = "/opt/drctl-barman/bin"

    final class Source {
        let dir: String
        let port: Int
        init(dir: String, port: Int) { self.dir = dir; self.port = port }
        func psql(_ sql: String, port p: Int? = nil, host: String = "127.0.0.1") throws -> String {
            let (st, out) = try run("/usr/bin/psql", ["-X", "-h", host, "-p", String(p ?? port), "-U", "postgres", "-Atqc", sql])
            guard st == 0 else { throw FixtureError(description: "\(sql): \(out)") }
            return out.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        /// Inserts one row in its own transaction; returns its commit time (RFC 3339, microseconds).
        func insert(_ id: Int, _ phase: String, port p: Int? = nil, host: String = "127.0.0.1") throws -> String {
            _ = try psql("insert into t(id, phase) values (\(id), '\(phase)')", port: p, host: host)
            return try psql("select to_char(pg_xact_commit_timestamp(xmin) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') from t where id = \(id)", port: p, host: host)
        }
    }

    /// `t` plus `delta` seconds, in RFC 3339 with microseconds.
    static func shift(_ t: String, _ delta: Double) -> String {
        let f = ISO8601DateFormatter()
        let whole = f.date(from: String(t.prefix(19)) + "Z")!
        let micros = Double(t.dropFirst(20).prefix(6))! / 1_000_000
        let d = whole.timeIntervalSince1970 + micros + delta
        let w = floor(d)
        return f.string(from: Date(timeIntervalSince1970: w)).dropLast() + String(format: ".%06dZ", Int(((d - w) * 1_000_000).rounded()))
    }

    /// Middle of two RFC 3339 times.
    static func between(_ a: String, _ b: String) -> String {
        let f = ISO8601DateFormatter()
        func secs(_ t: String) -> Double { f.date(from: String(t.prefix(19)) + "Z")!.timeIntervalSince1970 + Double(t.dropFirst(20).prefix(6))! / 1_000_000 }
        return shift(a, (secs(b) - secs(a)) / 2)
    }

    @Test func pointInTimeRecoveryIsExact() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "\(Self.barmanBin)/barman-cloud-backup"), "run scripts/install-deps.sh (barman-cloud venv)")
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "pitr")
        let dest = "s3://\(bucket)/cnpg"
        let archive = rgw.barmanArchiveCommand(dest: dest, server: "app-db")
        let work = try testWorkDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let pgDir = work + "/src"
        let port = try freePort()
        var pgEnv = ProcessInfo.processInfo.environment
        pgEnv["PG_EXTRA_CONF"] = "track_commit_timestamp = on"
        let (up, upOut) = try run(packageRoot.appendingPathComponent("scripts/pg-up.sh").path, [pgDir, String(port), archive], env: pgEnv)
        defer { _ = try? run(packageRoot.appendingPathComponent("scripts/pg-down.sh").path, [pgDir, "--purge"]) }
        try #require(up == 0, "pg-up failed: \(upOut)")
        let t0 = Date()
        func mark(_ what: String) { print("[\(Int(Date().timeIntervalSince(t0)))s] \(what)") }
        let src = Source(dir: pgDir, port: port)
        _ = try src.psql("create table t(id int primary key, phase text, at timestamptz default clock_timestamp())")

        var commits: [Int: String] = [:]
        for id in 1...3 { commits[id] = try src.insert(id, "before") }
        func backup(_ extra: [String]) throws {
            let (st, out) = try run("/usr/sbin/runuser", ["-u", "postgres", "--", "\(Self.barmanBin)/barman-cloud-backup", "--endpoint-url", rgw.endpoint, "--immediate-checkpoint"]
                                    + extra + ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", dest, "app-db"], env: rgw.environment)
            try #require(st == 0, "barman-cloud-backup \(extra): \(out)")
        }
        try backup([])                      // plain tar
        mark("plain backup done")
        usleep(1_200_000)
        commits[4] = try src.insert(4, "after plain backup")
        sleep(1)                            // backup ids have one-second resolution
        try backup(["--gzip"])
        mark("gzip backup done")
        commits[5] = try src.insert(5, "after gzip backup")
        sleep(1)
        commits[6] = try src.insert(6, "a second later")
        commits[7] = try src.insert(7, "later")
        commits[8] = try src.insert(8, "newest")
        try rgw.waitArchived(src.psql("select pg_walfile_name(pg_switch_wal())"), s3: s3, bucket: bucket)
        mark("archived")

        let env = rgw.environment
        func restore(_ at: String, into name: String, extra: [String] = []) throws -> (Int32, String, String) {
            let dir = work + "/" + name
            let (st, out) = try run(drctlBinary, ["restore", "--source", dest, "--server", "app-db", "--at", at, "--to", dir, "--yes", "--scratch-dir", work + "/scratch"] + extra, env: env)
            return (st, out, dir)
        }
        /// Starts a restored directory, returns the ids in t, stops it again.
        func rows(_ dir: String) throws -> [Int] {
            let p = try freePort()
            let conf = dir + "/drctl-postgresql.conf"
            let (st, out) = try run("/usr/sbin/runuser", ["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D", dir, "-w", "-t", "60",
                                                          "-o", "-c config_file=\(conf) -c port=\(p)", "-l", dir + "/drctl-postgres.log", "start"])
            try #require(st == 0, "start \(dir): \(out)")
            defer { _ = try? run("/usr/sbin/runuser", ["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D", dir, "-m", "fast", "-w", "stop"]) }
            let ids = try src.psql("select string_agg(id::text, ',' order by id) from t", port: p, host: dir)
            return ids.split(separator: ",").map { Int($0)! }
        }
        // Drill mode (drctl verify: replay without fsync, its data directory thrown away) from a
        // policy whose check reads the restored rows as one number (a bit per id).
        let policyDir = work + "/policies"
        try FileManager.default.createDirectory(atPath: policyDir, withIntermediateDirectories: true)
        func policy(expect: String, query: String = "select count(*) from t") throws {
            try (rgw.objectStorePolicy(bucket: bucket) + RGW.appPolicy(cluster: "app-db") + """
                  drill:
                    schedule: "0 6 * * *"
                    checks:
                      - sql: {cluster: app-db, database: postgres, query: "\(query)", expect: "\(expect)"}
                      - freshness: {cluster: app-db, database: postgres, table: t, column: at}
                """).write(toFile: policyDir + "/p.yaml", atomically: true, encoding: .utf8)
        }
        var verifyEnv = env
        verifyEnv.removeValue(forKey: "AWS_ENDPOINT_URL")
        verifyEnv["DRCTL_DATA_DIR"] = work + "/data"
        let scratch = work + "/scratch"
        func verify(_ extra: [String] = []) throws -> (Int32, String) {
            try run(drctlBinary, ["verify", "app", "--policies", policyDir, "--scratch-dir", scratch] + extra, env: verifyEnv)
        }
        /// Each target in every mode: drctl restore (replay with fsync on, then a checkpoint),
        /// drctl restore --fast-unsafe (replay without fsync, then a sync and a restart) and a drill.
        func expect(_ at: String, _ want: [Int], _ what: String, backup: String? = nil) throws {
            for mode in [[], ["--fast-unsafe"]] {
                let (st, out, dir) = try restore(at, into: "r-\(UUID().uuidString.prefix(6))", extra: mode)
                try #require(st == 0, "restore --at \(at) \(mode) (\(what)): \(out)")
                if let backup { #expect(out.contains("base backup        \(backup)") || out.contains(backup), "\(what): \(out)") }
                let got = try rows(dir)
                #expect(got == want, "\(what): --at \(at) \(mode) gave rows \(got), want \(want)\n\(out)")
                try? FileManager.default.removeItem(atPath: dir)
            }
            try policy(expect: "= \(want.reduce(0) { $0 | (1 << $1) })", query: "select coalesce(sum(1::bigint << id), 0) from t")
            let (st, out) = try verify(["--at", at])
            #expect(st == 0, "drill --at \(at) (\(what)) did not restore rows \(want): \(out)")
        }

        // The two backups: the plain one ended before commit 4, the gzip one before commit 5.
        let (_, listing) = try run(drctlBinary, ["backups", "--source", dest, "--server", "app-db", "-o", "json"], env: env)
        let backups = ((try JSONSerialization.jsonObject(with: Data(listing.utf8)) as! [String: Any])["barman"] as! [[String: Any]])[0]["backups"] as! [[String: Any]]
        let plainID = try #require(backups.first { $0["compression"] as? String == "none" }?["backupID"] as? String)
        let gzipID = try #require(backups.first { $0["compression"] as? String == "gz" }?["backupID"] as? String)

        // Just after the plain backup ended (before the first commit after it): from the plain tar.
        try expect(Self.shift(commits[4]!, -0.5), [1, 2, 3], "just after the plain base backup", backup: plainID)
        // Between two commits a second apart, from the gzip backup; and exactly at a commit (inclusive).
        try expect(Self.between(commits[5]!, commits[6]!), [1, 2, 3, 4, 5], "between two commits", backup: gzipID)
        try expect(commits[5]!, [1, 2, 3, 4, 5], "exactly at commit 5")
        try expect(Self.shift(commits[5]!, -0.000001), [1, 2, 3, 4], "a microsecond before commit 5")
        // The newest archived point: exactly the last commit, and latest.
        try expect(commits[8]!, Array(1...8), "at the newest commit")
        try expect("latest", Array(1...8), "latest")
        mark("five restores checked")

        // Refused up front, with the range named: before the first backup ended, and the future.
        var (st, out, _) = try restore(Self.shift(commits[1]!, -1), into: "early")
        #expect(st != 0 && out.contains("before the first recoverable point") && out.contains("recoverable range"), "\(out)")
        (st, out, _) = try restore(ISO8601DateFormatter().string(from: Date().addingTimeInterval(86400)), into: "future")
        #expect(st != 0 && out.contains("in the future"), "\(out)")
        // A non-empty target directory is refused and left alone.
        let busy = work + "/busy"
        try FileManager.default.createDirectory(atPath: busy, withIntermediateDirectories: true)
        try "keep".write(toFile: busy + "/file", atomically: true, encoding: .utf8)
        (st, out, _) = try restore("latest", into: "busy")
        #expect(st != 0 && out.contains("is not empty") && (try? String(contentsOfFile: busy + "/file", encoding: .utf8)) == "keep", "\(out)")

        // Across a timeline switch: recover to between 5 and 6, run that server on timeline 2
        // archiving into the same server name (as after a failover), commit 9 and 10 there.
        let (tst, tout, tdir) = try restore(Self.between(commits[5]!, commits[6]!), into: "tl2")
        try #require(tst == 0, "\(tout)")
        // drctl queued the new timeline's history file for the archiver (its server ran without archiving).
        #expect(FileManager.default.fileExists(atPath: tdir + "/pg_wal/archive_status/00000002.history.ready"))
        let p2 = try freePort()
        let (s2, o2) = try run("/usr/sbin/runuser", ["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D", tdir, "-w", "-t", "60",
                                                     "-o", "-c config_file=\(tdir)/drctl-postgresql.conf -c port=\(p2) -c archive_mode=on -c archive_command='\(archive.replacingOccurrences(of: "'", with: "'\\''"))' -c track_commit_timestamp=on",
                                                     "-l", tdir + "/drctl-postgres.log", "start"], env: env)
        try #require(s2 == 0, "\(o2)")
        defer { _ = try? run("/usr/sbin/runuser", ["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D", tdir, "-m", "immediate", "-w", "stop"]) }
        commits[9] = try src.insert(9, "timeline 2", port: p2, host: tdir)
        sleep(1)
        commits[10] = try src.insert(10, "timeline 2 later", port: p2, host: tdir)
        try rgw.waitArchived(src.psql("select pg_walfile_name(pg_switch_wal())", port: p2, host: tdir), s3: s3, bucket: bucket)
        mark("timeline 2 archived")
        // From the gzip backup on timeline 1, following 00000002.history: 1-5, then 9; never 6-8.
        try expect(Self.between(commits[9]!, commits[10]!), [1, 2, 3, 4, 5, 9], "across the timeline switch")

        // drctl verify on a policy for this archive: evidence, status, and failures named.
        // Drills here have long scratch paths, so their sockets live in /tmp/drctl-sock-*: those go
        // too. Only this test's: their marker names a data directory in its scratch directory.
        func sockets() -> Set<String> {
            Set(((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []).filter { name in
                name.hasPrefix("drctl-sock-")
                    && ((try? String(contentsOfFile: "/tmp/\(name)/.drctl-scratch", encoding: .utf8)) ?? "").contains("data=\(scratch)/")
            })
        }
        let socketsBefore = sockets()
        func leftovers() -> [String] {
            let dirs = ((try? FileManager.default.contentsOfDirectory(atPath: scratch)) ?? []) + sockets().subtracting(socketsBefore).sorted()
            // Processes of this test's drills only: their arguments name a path inside its own
            // scratch directory (another test's drill, running meanwhile, has its own).
            let (_, ps) = (try? run("/bin/ps", ["-eo", "args"])) ?? (0, "")
            return dirs + ps.split(separator: "\n").filter { $0.split(separator: " ").contains { $0.hasPrefix(scratch + "/") || $0 == scratch } }.map(String.init)
        }
        try policy(expect: "= 6")
        (st, out) = try verify(["--at", Self.between(commits[9]!, commits[10]!), "-o", "json"])
        #expect(st == 0, "\(out)")
        #expect(out.contains("\"result\" : \"passed\"") && out.contains("\"rtoSeconds\""), "\(out)")
        #expect(leftovers().isEmpty, "left behind: \(leftovers())")
        let (sst, statusOut) = try run(drctlBinary, ["status", "--policies", policyDir, "-o", "json"], env: verifyEnv)
        let status = try #require((try JSONSerialization.jsonObject(with: Data(statusOut.utf8)) as? [[String: Any]])?.first, "\(sst) \(statusOut)")
        let drill = try #require(status["lastDrill"] as? [String: Any], "\(statusOut)")
        #expect(drill["result"] as? String == "passed" && (drill["rtoSeconds"] as? Double ?? 0) > 0 && drill["achieved"] != nil, "\(drill)")
        // The catalog carries the evidence too: status from a synced catalog shows the same drill.
        let catalogFile = work + "/catalog.sqlite"
        let (cst, cout) = try run(drctlBinary, ["catalog", "sync", "--policies", policyDir, "--catalog", catalogFile], env: verifyEnv)
        #expect(cst == 0, "\(cout)")
        let (_, fromCatalog) = try run(drctlBinary, ["status", "--policies", policyDir, "--catalog", catalogFile, "-o", "json"], env: verifyEnv)
        let catalogDrill = ((try JSONSerialization.jsonObject(with: Data(fromCatalog.utf8)) as? [[String: Any]])?.first?["lastDrill"] as? [String: Any])
        #expect(catalogDrill?["id"] as? String == drill["id"] as? String, "\(fromCatalog)")

        // A check that fails: non-zero, named; nothing left.
        try policy(expect: "= 999")
        (st, out) = try verify(["--at", Self.between(commits[9]!, commits[10]!)])
        #expect(st == 1 && out.contains("check failed") && out.contains("got 6, expected = 999"), "\(out)")
        #expect(leftovers().isEmpty, "left behind: \(leftovers())")

        // SIGTERM mid-restore (at several points): exit 143, no scratch directory, no postgres.
        try policy(expect: "= 6")
        for delay in [300_000, 700_000, 1_100_000] as [useconds_t] {
            let pid = try spawn(drctlBinary, ["verify", "app", "--policies", policyDir, "--scratch-dir", scratch, "--at", "latest"], env: verifyEnv)
            usleep(delay)
            kill(pid, SIGTERM)
            let raw = try reap(pid)
            let code = exitCode(raw)
            #expect(code == 143 || code == 0, "exit \(code) after SIGTERM at \(delay / 1000) ms")
            #expect(leftovers().isEmpty, "left behind after SIGTERM at \(delay / 1000) ms: \(leftovers())")
        }

        // A WAL chain broken before the target: refused, the missing segment named.
        let layout = BarmanLayout(root: "cnpg")
        let gzipEndWAL = try #require(backups.first { $0["backupID"] as? String == gzipID }?["endWAL"] as? String)
        // The gzip backup's own last segment: that backup is no longer restorable, and the
        // plain one's chain to the target passes the hole.
        let victim = try #require(WALSegment(name: gzipEndWAL))
        try s3.deleteObject(S3URL(bucket: bucket, key: layout.key(for: .walSegment(server: "app-db", segment: victim, compression: .gzip))))
        (st, out) = try verify(["--at", Self.between(commits[9]!, commits[10]!)])
        #expect(st == 1 && out.contains("WAL segment \(victim.name) is missing") && out.contains("recovery from \(plainID) stops at"), "\(victim.name): \(out)")
        #expect(leftovers().isEmpty, "left behind: \(leftovers())")
        mark("verify checked")
    }
}

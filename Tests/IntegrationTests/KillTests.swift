import Foundation
import Support
import Testing
import Layout
import ObjectStore
import TestSupport

/// SIGKILL at random points, 20 times each: afterwards the catalog opens and a re-run converges
/// to what an uninterrupted run makes; a killed drill's leftovers (scratch directory, socket
/// directory, a PostgreSQL still running) are removed by the next run.
@Suite(.serialized) struct KillTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    /// The catalog's contents, in order (python's sqlite3), and its integrity check.
    static func dump(_ catalog: String) throws -> (String, String) {
        let script = """
            import sqlite3, sys
            c = sqlite3.connect(sys.argv[1])
            print(c.execute("pragma integrity_check").fetchone()[0])
            for r in c.execute("select store, key, size, etag from objects order by store, key"): print("o", *r)
            for r in c.execute("select store, key, etag, length(body) from metadata order by store, key"): print("m", *r)
            """
        let (st, out) = try run("/usr/bin/python3", ["-c", script, catalog])
        try #require(st == 0, "\(out)")
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false)
        return (String(lines.first ?? ""), lines.dropFirst().joined(separator: "\n"))
    }

    @Test func killedCatalogSyncsConverge() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "killsync")
        // 300 base backups' backup.info and 1,200 WAL segments.
        let keys = (0..<300).map { "cnpg/db/base/20261101T\(String(format: "%06d", $0))/backup.info" }
            + (0..<1200).map { n in "cnpg/db/wals/0000000100000000/0000000100000\(String(format: "%03X", n / 256))000000\(String(format: "%02X", n % 256))" }
        let errors = ErrorBox()
        DispatchQueue.concurrentPerform(iterations: 16) { w in
            for i in stride(from: w, to: keys.count, by: 16) {
                do { try s3.putObject(S3URL(bucket: bucket, key: keys[i]), bytes: Array("status=DONE\nbegin_wal=x\n".utf8)) } catch { errors.add(error) }
            }
        }
        try #require(errors.all.isEmpty, "\(errors.all.prefix(3))")
        let work = try testWorkDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        func sync(_ catalog: String) throws -> pid_t {
            try spawn(drctlBinary, ["catalog", "sync", "--source", "s3://\(bucket)/cnpg", "--catalog", catalog], env: rgw.environment)
        }
        let reference = work + "/reference.sqlite"
        _ = try reap(try sync(reference))
        let (refOK, want) = try Self.dump(reference)
        #expect(refOK == "ok" && want.contains("m ") && want.split(separator: "\n").count >= keys.count)

        let catalog = work + "/killed.sqlite"
        var killedMidway = 0
        for i in 0..<20 {
            let pid = try sync(catalog)
            usleep(useconds_t.random(in: 20_000...900_000))
            if kill(pid, SIGKILL) == 0 { killedMidway += 1 }
            _ = try reap(pid)
            if FileManager.default.fileExists(atPath: catalog) {
                let (ok, _) = try Self.dump(catalog)
                #expect(ok == "ok", "run \(i): the catalog is damaged: \(ok)")
            }
        }
        #expect(killedMidway > 0)
        _ = try reap(try sync(catalog))
        let (ok, got) = try Self.dump(catalog)
        #expect(ok == "ok")
        #expect(got == want, "after \(killedMidway) kills, a re-run has the same index as an uninterrupted sync")
    }

    /// 1,200 objects to delete (two DeleteObjects batches), SIGKILLed 20 times at random points;
    /// whenever a run got to the end, the deleted objects are written back for the next round.
    @Test func killedPrunesDeleteOnlyThePlanAndConverge() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "killprune")
        let layout = BarmanLayout(root: "cnpg")
        let now = Date()
        func segment(_ n: UInt32) -> WALSegment { WALSegment(timeline: 1, log: n / 256, segment: n % 256) }
        var objects: [(String, [UInt8])] = (1...UInt32(0x600)).map {
            (layout.key(for: .walSegment(server: "db", segment: segment($0), compression: .gzip)), [1])
        }
        // Two backups past the 7-day window (deleted with the WAL only they need), two kept.
        for (daysAgo, begin) in [(30.0, UInt32(2)), (20, 0x200), (10, 0x4A0), (3, 0x5F0)] {
            let spec = PruneDifferentialTests.Spec(daysAgo: daysAgo, status: "DONE", timeline: 1, beginSegment: begin)
            let start = now.addingTimeInterval(-daysAgo * 86400)
            let id = PruneDifferentialTests.stamp(start, "yyyyMMdd'T'HHmmss")
            objects.append((layout.backupInfoKey(server: "db", backupID: id),
                            Array(PruneDifferentialTests.info(spec, begin: start, end: start.addingTimeInterval(30), seg: segment(begin)).utf8)))
            objects.append((layout.key(for: .backupArchive(server: "db", backupID: id, name: "data", compression: .gzip)), [2]))
        }
        let toWrite = objects
        _ = try Parallel.map(toWrite, threads: 16) { try s3.putObject(S3URL(bucket: bucket, key: $0.0), bytes: $0.1) }
        func listing() throws -> Set<String> {
            var keys = Set<String>()
            try s3.listObjects(bucket: bucket, prefix: "cnpg/") { keys.formUnion($0.objects.map(\.key)) }
            return keys
        }
        let args = ["prune", "--source", "s3://\(bucket)/cnpg", "--server", "db", "--retention", "7d", "--trust-unproven"]
        let planStart = Date()
        let (pst, planOut) = try run(drctlBinary, args + ["-o", "json"], env: rgw.environment)
        // Kills land from shortly before the plan is ready to well into the deletions.
        let planTime = useconds_t(Date().timeIntervalSince(planStart) * 1e6)
        try #require(pst == 0, "\(planOut)")
        let selected = Set(try #require((try JSONSerialization.jsonObject(with: Data(planOut.utf8)) as? [String: Any])?["keysToDelete"] as? [String]))
        #expect(selected.count > 1000, "\(selected.count)")
        let before = try listing()
        // One run to the end, timed, so that the kills can aim at the deletions; then everything back.
        let applyStart = Date()
        let (ast, aout) = try run(drctlBinary, args + ["--apply"], env: rgw.environment)
        try #require(ast == 0, "\(aout)")
        let applyTime = useconds_t(Date().timeIntervalSince(applyStart) * 1e6)
        #expect(before.subtracting(try listing()) == selected)
        _ = try Parallel.map(objects.filter { selected.contains($0.0) }, threads: 16) { try s3.putObject(S3URL(bucket: bucket, key: $0.0), bytes: $0.1) }

        var killedMidway = 0, partial = 0
        for i in 0..<20 {
            let pid = try spawn(drctlBinary, args + ["--apply"], env: rgw.environment)
            usleep(useconds_t.random(in: planTime * 9 / 10...max(applyTime, planTime) + 200_000))
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == 0 {   // still running (a finished one is a zombie kill() would not fail on)
                kill(pid, SIGKILL)
                killedMidway += 1
                _ = try reap(pid)
            }
            let gone = before.subtracting(try listing())
            #expect(gone.isSubset(of: selected), "run \(i): deleted what retention did not select: \(gone.subtracting(selected).sorted().prefix(5))")
            if !gone.isEmpty && gone.count < selected.count { partial += 1 }
            if gone == selected {
                let back = objects.filter { gone.contains($0.0) }
                _ = try Parallel.map(back, threads: 16) { try s3.putObject(S3URL(bucket: bucket, key: $0.0), bytes: $0.1) }
            }
        }
        #expect(killedMidway > 0)
        print("killedPrunes: a plan takes \(planTime / 1000) ms, a whole prune \(applyTime / 1000) ms; \(killedMidway) of 20 runs killed before they ended, \(partial) of them with the deletion part done")
        let (st, out) = try run(drctlBinary, args + ["--apply"], env: rgw.environment)
        #expect(st == 0, "\(out)")
        let after = try listing()
        #expect(before.subtracting(after) == selected, "after \(killedMidway) kills: the same objects are gone as after one uninterrupted prune")
        // Every recorded plan has its outcome: nothing is left half done.
        var records: [String] = []
        try s3.listObjects(bucket: bucket, prefix: "drctl/prune/db/") { records += $0.objects.map(\.key) }
        let plans = records.filter { !$0.hasSuffix(".done.json") }
        #expect(!plans.isEmpty && plans.allSatisfy { records.contains(String($0.dropLast(5)) + ".done.json") }, "\(records)")
        let (_, again) = try run(drctlBinary, args + ["-o", "json"], env: rgw.environment)
        #expect((try JSONSerialization.jsonObject(with: Data(again.utf8)) as? [String: Any])?["keysToDelete"] as? [String] == [])
    }

    @Test func killedDrillsAreCleanedUpByTheNextRun() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "killdrill")
        let dir = db.work + "/policies", scratch = db.work + "/scratch"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        try ServeTests.policy(db, dir: dir, drillSchedule: "0 6 * * *")
        var pids: [pid_t] = []
        for _ in 0..<20 {
            let pid = try spawn(drctlBinary, ["verify", "app", "--policies", dir, "--scratch-dir", scratch], env: db.drctlEnvironment)
            usleep(useconds_t.random(in: 50_000...1_500_000))
            kill(pid, SIGKILL)
            _ = try reap(pid)
            pids.append(pid)
        }
        // And once more, killed while its PostgreSQL runs: that server is orphaned.
        let last = try spawn(drctlBinary, ["verify", "app", "--policies", dir, "--scratch-dir", scratch], env: db.drctlEnvironment, output: db.work + "/last.log")
        try waitUntil(1000, every: 10_000) { try HostFaultTests.postgresUnder(scratch) > 0 }
        kill(last, SIGKILL)
        _ = try reap(last)
        pids.append(last)
        #expect(try HostFaultTests.postgresUnder(scratch) >= 1, "a PostgreSQL outlived its drctl")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch)
        let sockets = try FileManager.default.contentsOfDirectory(atPath: "/tmp").filter { n in pids.contains { n.hasPrefix("drctl-sock-\($0)-") } }
        print("after 20 SIGKILLs: \(leftovers.count) scratch directories, \(sockets.count) socket directories, \(try HostFaultTests.postgresUnder(scratch)) postgres")
        #expect(!leftovers.isEmpty, "some kills landed mid-drill")

        let (st, out) = try run(drctlBinary, ["verify", "app", "--policies", dir, "--scratch-dir", scratch], env: db.drctlEnvironment)
        #expect(st == 0 && out.contains("drill of app PASSED"), "\(out)")
        #expect(out.contains("which no longer runs"), "\(out)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch).isEmpty, "leftovers removed")
        #expect(try HostFaultTests.postgresUnder(scratch) == 0, "no postgres left")
        let stillThere = try FileManager.default.contentsOfDirectory(atPath: "/tmp").filter { n in pids.contains { n.hasPrefix("drctl-sock-\($0)-") } }
        #expect(stillThere.isEmpty, "\(stillThere)")
        // Nor a captured output of a program a killed drctl was running (postgres --version, psql).
        let temp = FileManager.default.temporaryDirectory.path
        let outputs = try FileManager.default.contentsOfDirectory(atPath: temp).filter { n in pids.contains { n.hasPrefix("drctl-run-\($0)-") } }
        #expect(outputs.isEmpty, "\(outputs)")
        let (cst, cout) = try run(drctlBinary, ["status", "--policies", dir, "--catalog", db.work + "/data/catalog.sqlite"], env: db.drctlEnvironment)
        #expect(cst == 0 || cst == 4, "the catalog opens: \(cout)")
    }

    /// PostgreSQL runs drctl as its restore_command as the postgres user: a drctl that user
    /// cannot reach (under a 0700 directory, as in a home or `mktemp -d`) is named before anything
    /// is downloaded, not found out from the server's "command not executable" after it started.
    @Test func aDrctlThePostgresUserCannotRunIsNamedBeforeAnyDownload() throws {
        try #require(geteuid() == 0, "needs root: PostgreSQL runs as another user only then")
        let db = try ArchivedDatabase(rgw: rgw, bucket: "reach")
        _ = try db.targetBetweenTwoCommits()
        let hidden = db.work + "/private"
        try FileManager.default.createDirectory(atPath: hidden, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try FileManager.default.copyItem(atPath: drctlBinary, toPath: hidden + "/drctl")
        var env = db.rgw.environment
        env["DRCTL_DATA_DIR"] = db.work + "/data"
        let dir = db.work + "/restored"
        let (st, out) = try run(hidden + "/drctl", ["restore", "--source", "s3://\(db.bucket)/cnpg", "--server", "app-db", "--at", "latest", "--to", dir, "--yes",
                                                   "--scratch-dir", db.work + "/scratch"], env: env)
        #expect(st == 1 && out.contains("postgres cannot enter \(hidden)") && out.contains("nothing was downloaded"), "\(out)")
        #expect(!out.contains("base backup") || !out.contains("unpacked"), "nothing downloaded: \(out)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).isEmpty, "the target is left empty")
    }

    /// `drctl restore` (not a drill) hands over a data directory that is on disk: the server it
    /// leaves running is killed with SIGKILL the moment drctl returns, started again as drctl
    /// said to, and has the same rows; the restore ran with replay tuned but durability kept, or
    /// (--fast-unsafe) without fsync and synced once before the server was handed over with fsync on.
    @Test(arguments: [[], ["--fast-unsafe"]])
    func aRestoredServerKilledRightAfterDrctlReturnsLosesNothing(mode: [String]) throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "durable")
        let target = try db.targetBetweenTwoCommits()
        var env = db.rgw.environment
        env["DRCTL_DATA_DIR"] = db.work + "/data"
        let dir = db.work + "/restored", port = try freePort()
        let (st, out) = try run(drctlBinary, ["restore", "--source", "s3://\(db.bucket)/cnpg", "--server", "app-db", "--at", target, "--to", dir, "--yes",
                                              "--start", "--port", String(port), "--scratch-dir", db.work + "/scratch", "-o", "json", "--quiet"] + mode, env: env)
        try #require(st == 0, "\(out)")
        let outcome = try #require((try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])?["outcome"] as? [String: Any], "\(out)")
        let settings = try #require(outcome["replaySettings"] as? [String: String], "\(out)")
        if mode.isEmpty {
            #expect(settings["fsync"] == nil && settings["full_page_writes"] == nil && settings["max_wal_size"] != nil, "a real restore keeps durability: \(settings)")
        } else {
            #expect(settings["fsync"] == "off" && (outcome["phases"] as? [String: Double])?["sync_restart"] != nil, "replayed without fsync, then synced: \(outcome)")
        }
        // Where recovery stopped, as the server said it before any restart (after one it is a
        // server started without recovery, which knows of no replayed transaction): row 43's
        // commit, after the base backup's end and before the target.
        let json = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        let backupEnd = ((json["plan"] as? [String: Any])?["backup"] as? [String: Any])?["endTime"] as? String
        let achieved = outcome["achieved"] as? String
        #expect(achieved != nil && backupEnd != nil && achieved != backupEnd && achieved! <= target, "achieved \(achieved ?? "nil"), backup end \(backupEnd ?? "nil"), target \(target)")
        // What is handed over runs with fsync on, whatever replay ran with.
        let (fst, fsync) = try run("/usr/bin/psql", ["-X", "-h", dir, "-p", String(port), "-U", "postgres", "-Atqc", "select current_setting('fsync') || current_setting('full_page_writes')"])
        #expect(fst == 0 && fsync.trimmingCharacters(in: .whitespacesAndNewlines) == "onon", "\(fsync)")
        let pid = try #require(pid_t(try String(contentsOfFile: dir + "/postmaster.pid", encoding: .utf8).split(separator: "\n").first ?? ""))
        kill(pid, SIGKILL)
        _ = waitUntil(100, every: 50_000) { kill(pid, 0) != 0 }
        // Started again as drctl's message says (its own configuration file beside the data).
        let pgctl = "/usr/lib/postgresql/15/bin/pg_ctl"
        let (sst, sout) = try run("/usr/sbin/runuser", ["-u", "postgres", "--", pgctl, "-D", dir, "-o", "-c config_file=\(dir)/drctl-postgresql.conf -c port=\(port)",
                                                       "-l", dir + "/after-kill.log", "-w", "start"])
        defer { _ = try? run("/usr/sbin/runuser", ["-u", "postgres", "--", pgctl, "-D", dir, "-m", "immediate", "-w", "stop"]) }
        try #require(sst == 0, "\(sout) \((try? String(contentsOfFile: dir + "/after-kill.log", encoding: .utf8)) ?? "")")
        let (qst, rows) = try run("/usr/bin/psql", ["-X", "-h", dir, "-p", String(port), "-U", "postgres", "-Atqc", "select count(*), max(id) from t"])
        #expect(qst == 0 && rows.trimmingCharacters(in: .whitespacesAndNewlines) == "43|43", "the same rows after SIGKILL: \(rows)")
    }
}

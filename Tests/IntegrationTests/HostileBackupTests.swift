import Foundation
import Testing
import ObjectStore
import Paths
import TestSupport

/// A real barman-cloud base backup, doctored in the bucket as someone who can write to it
/// would: the restore must neither write outside its target nor run what the backup asks for.
@Suite struct HostileBackupTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    /// Replaces the database's base backup tar (data.tar.gz) with `transform` of its entries.
    static func doctor(_ db: ArchivedDatabase, entries known: [(String, TarBuilder.Kind)]? = nil,
                       _ transform: ([(String, TarBuilder.Kind)]) -> [(String, TarBuilder.Kind)]) throws {
        var keys: [String] = []
        try db.s3.listObjects(bucket: db.bucket, prefix: "cnpg/app-db/base/") { keys += $0.objects.map(\.key) }
        let key = try #require(keys.first { $0.hasSuffix("/data.tar.gz") }, "\(keys)")
        let file = db.work + "/doctor.tar"
        _ = try db.s3.download(S3URL(bucket: db.bucket, key: key), to: file + ".gz", overwrite: true)
        try #require(try run("/bin/gzip", ["-df", file + ".gz"]).0 == 0)
        var t = TarBuilder()
        for (name, kind) in transform(try known ?? TarBuilder.entries(of: file)) { t.add(name, kind, mode: name.hasSuffix("/") ? 0o700 : 0o600) }
        try Data(t.archive).write(to: URL(fileURLWithPath: file))
        try #require(try run("/bin/gzip", ["-f", file]).0 == 0)
        try db.s3.putObject(S3URL(bucket: db.bucket, key: key), bytes: Array(try Data(contentsOf: URL(fileURLWithPath: file + ".gz"))))
        unlink(file + ".gz")
    }

    /// A policy directory for the database's workload "app" with a drill of these `sql` checks.
    static func drillPolicy(_ db: ArchivedDatabase, checks: [String], preload: [String] = []) throws -> String {
        let dir = db.work + "/policies"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let drill = "  drill:\n    schedule: \"0 6 * * *\"\n" + (preload.isEmpty ? "" : "    preloadLibraries: [\(preload.joined(separator: ", "))]\n")
            + "    checks:\n" + checks.map { "      - sql: \($0)\n" }.joined()
        try (db.rgw.objectStorePolicy(bucket: db.bucket) + RGW.appPolicy(cluster: "app-db", spec: drill)).write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        return dir
    }

    /// drctl's environment for `--source` runs: the endpoint too.
    static func sourceEnvironment(_ db: ArchivedDatabase) -> [String: String] {
        var env = db.rgw.environment
        env["DRCTL_DATA_DIR"] = db.work + "/data"
        return env
    }

    /// Every path under `dir`, without following links.
    static func tree(_ dir: String) -> [String] {
        (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []).sorted()
    }

    /// The issue's ladder, appended to a real backup: `d/up -> ..`, `d/up/x -> ..`, then `x/ANY`.
    @Test func chainedLinksInTheBaseBackupWriteNothingOutsideTheTarget() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "tarladder")
        var original: [(String, TarBuilder.Kind)] = []
        try Self.doctor(db) { entries in
            original = entries
            return entries + [("d/", .directory), ("d/up", .symlink("..")), ("d/up/x", .symlink("..")), ("x/ANY", .file(Array("escaped".utf8)))]
        }
        let place = db.work + "/place"
        try FileManager.default.createDirectory(atPath: place + "/r", withIntermediateDirectories: true)
        let (st, out) = try run(drctlBinary, ["restore", "--source", "s3://\(db.bucket)/cnpg", "--server", "app-db", "--at", "latest",
                                              "--to", place + "/r/data", "--yes", "--scratch-dir", db.work + "/scratch"], env: Self.sourceEnvironment(db))
        #expect(st == 1 && out.contains("goes through the link d/up: refused"), "\(out)")
        #expect(Self.tree(place) == ["r", "r/data"], "nothing outside the target, and the target emptied: \(Self.tree(place))")
        #expect(!FileManager.default.fileExists(atPath: place + "/r/ANY") && !FileManager.default.fileExists(atPath: place + "/ANY"))

        // A tablespace_map (not even UTF-8) naming a directory outside: PostgreSQL would link and replay into it.
        // (GNU tar cannot read the doctored archive back: it refuses the ladder too.)
        try Self.doctor(db, entries: original) { entries in
            entries + [("tablespace_map", .file(Array("16384 \(place)/ts\n".utf8) + [0xFF, 0x0A]))]
        }
        let (tst, tout) = try run(drctlBinary, ["restore", "--source", "s3://\(db.bucket)/cnpg", "--server", "app-db", "--at", "latest",
                                                "--to", place + "/r/data", "--yes", "--scratch-dir", db.work + "/scratch"], env: Self.sourceEnvironment(db))
        #expect(tst == 1 && tout.contains("has a tablespace_map but no tablespace archives: refused"), "\(tout)")
        #expect(Self.tree(place) == ["r", "r/data"], "\(Self.tree(place))")
    }

    /// The backup's postgresql.auto.conf asks for archiving, a restore_command, a preloaded
    /// library and every address; a restored server (kept running) and a drill do none of it, and
    /// the store's keys are nowhere the restored server's superuser can read.
    @Test func theBackupsOwnConfigurationIsNeverRun() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "autoconf")
        let markers = db.work + "/markers"
        try FileManager.default.createDirectory(atPath: markers, withIntermediateDirectories: true)
        chmod(markers, 0o777)   // so that the attack would work if the server ran it
        let hostile = """
            # Do not edit this file manually!
            archive_mode = 'on'
            archive_command = 'touch \(markers)/archived-%f'
            restore_command = 'touch \(markers)/restored-%f; false'
            shared_preload_libraries = 'auto_explain'
            listen_addresses = '*'
            log_min_messages = 'warning'
            """
        try Self.doctor(db) { entries in
            entries.filter { !["postgresql.auto.conf", "./postgresql.auto.conf"].contains($0.0) } + [("postgresql.auto.conf", .file(Array(hostile.utf8)))]
        }
        let dir = db.work + "/restored"
        let port = try freePort()
        let (st, out) = try run(drctlBinary, ["restore", "--source", "s3://\(db.bucket)/cnpg", "--server", "app-db", "--at", "latest", "--to", dir,
                                              "--yes", "--start", "--port", String(port), "--scratch-dir", db.work + "/scratch"], env: Self.sourceEnvironment(db))
        try #require(st == 0, "\(out)")
        defer { _ = try? run("/usr/sbin/runuser", ["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D", dir, "-m", "immediate", "-w", "stop"]) }
        #expect(out.contains("postgresql.auto.conf was not read (it sets archive_mode, archive_command, restore_command, shared_preload_libraries, listen_addresses, log_min_messages)"), "\(out)")
        #expect(out.contains("kept as \(dir)/postgresql.auto.conf.drctl-set-aside"), "\(out)")
        #expect((try? String(contentsOfFile: dir + "/postgresql.auto.conf.drctl-set-aside", encoding: .utf8)) == hostile, "the user's settings are kept")
        #expect(!FileManager.default.fileExists(atPath: dir + "/postgresql.auto.conf"))

        func sql(_ q: String) throws -> String {
            let (qst, qout) = try run("/usr/bin/psql", ["-X", "-h", dir, "-p", String(port), "-U", "postgres", "-Atqc", q])
            try #require(qst == 0, "\(q): \(qout)")
            return qout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try sql("show archive_mode") == "off")
        let archiveCommand = try sql("select setting || ' from ' || source from pg_settings where name = 'archive_command'")
        #expect(archiveCommand.hasSuffix(" from command line") && !archiveCommand.contains("touch"), "\(archiveCommand)")
        #expect(try sql("show shared_preload_libraries") == "")
        #expect(try sql("show listen_addresses") == "127.0.0.1")
        // The promoted server writes and switches WAL: with archiving on, the archiver would run now.
        _ = try sql("insert into t(id) values (1000); select pg_switch_wal()")
        sleep(2)
        #expect(Self.tree(markers).isEmpty, "the backup's commands ran: \(Self.tree(markers))")

        // No key in the server's environment, readable by any superuser of the restored database.
        let environ = try sql("select encode(pg_read_binary_file('/proc/self/environ'), 'escape')")
        #expect(!environ.contains(rgw.secretKey) && !environ.contains(rgw.accessKey) && !environ.contains("AWS_"), "server environment: \(environ)")
        // Nor in any file drctl left: the credentials file went at promotion.
        for base in [dir, db.work + "/scratch"] {
            // (The backup's own postgresql.conf holds them: this test's source archives with them in its archive_command.)
            for rel in Self.tree(base) where rel != "postgresql.conf" {
                guard let text = try? String(contentsOfFile: base + "/" + rel, encoding: .utf8) else { continue }
                #expect(!text.contains(rgw.secretKey), "the secret key is in \(base)/\(rel)")
            }
        }

        // A drill of the same backup: passes, records what it did not read, archives nothing; it
        // preloads what the policy allows (not what the backup asked for).
        let preloaded = #"select count(*) from pg_settings where name = 'shared_preload_libraries' and setting = 'pg_stat_statements' and source = 'command line'"#
        let policies = try Self.drillPolicy(db, checks: [#"{cluster: app-db, database: postgres, query: "select count(*) from t", expect: ">= 40"}"#,
                                                         "{cluster: app-db, database: postgres, query: \"\(preloaded)\", expect: \"= 1\"}"],
                                            preload: ["pg_stat_statements"])
        let (vst, vout) = try run(drctlBinary, ["verify", "app", "--policies", policies, "--scratch-dir", db.work + "/scratch", "-o", "json"], env: db.drctlEnvironment)
        #expect(vst == 0, "\(vout)")
        // The evidence array on stdout, after the step log on stderr.
        let evidence = vout.range(of: "[\n  {").flatMap { try? JSONSerialization.jsonObject(with: Data(vout[$0.lowerBound...].utf8)) as? [[String: Any]] }?.first
        let databases = evidence?["databases"] as? [[String: Any]]
        #expect((databases?.first?["setAside"] as? [String])?.contains("archive_command") == true, "\(vout)")
        sleep(1)
        #expect(Self.tree(markers).isEmpty, "the drill ran the backup's commands: \(Self.tree(markers))")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: db.work + "/scratch")) ?? []).filter { $0.hasPrefix("drctl-drill") }.isEmpty)
    }

    /// Directories that look like a killed drctl's leftovers, planted by someone else (another
    /// user, or without drctl's marker), pointing at the host's own PostgreSQL: the next drill
    /// neither signals that server nor deletes them. A leftover of drctl's own is removed, but
    /// the server its pid file names is left alone when that server's data directory is elsewhere.
    @Test func plantedScratchDirectoriesAreLeftAlone() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "planted")
        let victim = try #require(try String(contentsOfFile: db.work + "/src/data/postmaster.pid", encoding: .utf8).split(separator: "\n").first.flatMap { pid_t($0) })
        let owner = String(repeating: "ab", count: 16)
        try FileManager.default.createDirectory(atPath: db.work + "/data", withIntermediateDirectories: true)
        try (owner + "\n").write(toFile: db.work + "/data/scratch-owner", atomically: true, encoding: .utf8)
        let dead = try spawn("/bin/true", [])
        _ = try reap(dead)
        let base = db.work + "/scratch"
        let nobody = getpwnam("nobody").pointee.pw_uid
        func plant(_ path: String, uid: uid_t, marker: String?, lock: String = "data/postmaster.pid") throws {
            try FileManager.default.createDirectory(atPath: Paths.parent(path + "/" + lock), withIntermediateDirectories: true)
            try "\(victim)\n\(db.work)/src\n".write(toFile: path + "/" + lock, atomically: true, encoding: .utf8)
            if let marker { try (marker + "\n").write(toFile: path + "/.drctl-scratch", atomically: true, encoding: .utf8) }
            chmod(path, 0o700)
            _ = try run("/bin/chown", ["-R", "\(uid)", path])
        }
        let planted = [
            ("another user's, with a marker", base + "/drctl-drill-app-db-20260101T000000Z-\(dead)", nobody, owner as String?, "data/postmaster.pid"),
            ("drctl's user's, without a marker", base + "/drctl-restore-app-db-20260101T000001Z-\(dead)", geteuid(), nil, "data/postmaster.pid"),
            ("with another id", base + "/drctl-drill-app-db-20260101T000002Z-\(dead)", geteuid(), String(repeating: "cd", count: 16), "data/postmaster.pid"),
            ("a socket directory of another user", "/tmp/drctl-sock-\(dead)-Ab12Cd", nobody, owner, ".s.PGSQL.5432.lock"),
        ]
        for (_, path, uid, marker, lock) in planted { try plant(path, uid: uid, marker: marker, lock: lock) }
        defer { try? FileManager.default.removeItem(atPath: "/tmp/drctl-sock-\(dead)-Ab12Cd") }
        // drctl's own leftover (its marker, its id), whose pid file names the host's server.
        let ours = base + "/drctl-drill-app-db-20260101T000003Z-\(dead)"
        try plant(ours, uid: geteuid(), marker: owner)

        try ServeTests.policy(db, dir: db.work + "/policies", drillSchedule: "0 6 * * *")
        let (st, out) = try run(drctlBinary, ["verify", "app", "--policies", db.work + "/policies", "--scratch-dir", base], env: db.drctlEnvironment)
        #expect(st == 0 && out.contains("drill of app PASSED"), "\(out)")
        #expect(kill(victim, 0) == 0 && (try? db.psql("select 1")) == "1", "the host's own PostgreSQL was signalled")
        for (what, path, _, _, _) in planted {
            #expect(FileManager.default.fileExists(atPath: path), "\(what): deleted")
            #expect(!out.contains(path), "\(what): \(out)")
        }
        #expect(!FileManager.default.fileExists(atPath: ours) && out.contains("removed \(ours), left by drctl process \(dead)"), "\(out)")
    }

    /// A drill's checks run in read-only transactions: a policy SQL that writes fails the check
    /// instead of changing the restored database.
    /// A backup that would not fit is refused before anything is fetched, with the sizes, and
    /// leaves nothing behind (here a backup.info claiming a 1 PiB data directory).
    @Test func aRestoreThatCannotFitIsRefusedBeforeItStarts() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "nospace")
        var keys: [String] = []
        try db.s3.listObjects(bucket: db.bucket, prefix: "cnpg/app-db/base/") { keys += $0.objects.map(\.key) }
        let infoKey = try #require(keys.first { $0.hasSuffix("/backup.info") }, "\(keys)")
        var info = ""
        try db.s3.getObject(S3URL(bucket: db.bucket, key: infoKey)) { info += String(decoding: $0, as: UTF8.self) }
        let doctored = info.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("cluster_size=") ? "cluster_size=\(Int64(1) << 50)" : String($0) }.joined(separator: "\n")
        try #require(doctored != info, "backup.info has a cluster_size: \(info)")
        try db.s3.putObject(S3URL(bucket: db.bucket, key: infoKey), bytes: Array(doctored.utf8))
        let scratch = db.work + "/scratch", dir = db.work + "/restored"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let (st, out) = try run(drctlBinary, ["restore", "--source", "s3://\(db.bucket)/cnpg", "--server", "app-db", "--at", "latest", "--to", dir,
                                              "--yes", "--scratch-dir", scratch], env: Self.sourceEnvironment(db))
        #expect(st == 1 && out.contains("not enough disk for this restore: the data directory about 1024.0 TiB in \(dir)"), "\(out)")
        #expect(!out.contains("fetching "), "nothing was fetched: \(out)")
        #expect(Self.tree(dir).isEmpty && Self.tree(scratch).isEmpty, "left behind: \(Self.tree(dir)) \(Self.tree(scratch))")
    }

    /// WAL in a compression drctl cannot read (barman-cloud's zstd) makes status say so, before a drill fails on it.
    @Test func anArchiveDrctlCannotReadIsAtRisk() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "zstd")
        try db.s3.putObject(S3URL(bucket: db.bucket, key: "cnpg/app-db/wals/0000000100000000/0000000100000000000000F0.zst"), bytes: [0x28, 0xb5, 0x2f, 0xfd])
        let policies = try Self.drillPolicy(db, checks: [#"{cluster: app-db, database: postgres, query: "select 1", expect: "= 1"}"#])
        let (st, out) = try run(drctlBinary, ["status", "--policies", policies], env: db.drctlEnvironment)
        #expect(st == 4 && out.contains("app-db: drctl cannot verify zstd-compressed WAL or base backups"), "\(out)")
    }

    @Test func checksCannotWrite() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "readonly")
        let policies = try Self.drillPolicy(db, checks: [#"{cluster: app-db, database: postgres, query: "insert into t(id) values (5000) returning 1", expect: "= 1"}"#,
                                                         #"{cluster: app-db, database: postgres, query: "select count(*) from t", expect: "= 42"}"#])
        let (st, out) = try run(drctlBinary, ["verify", "app", "--policies", policies, "--scratch-dir", db.work + "/scratch"], env: db.drctlEnvironment)
        #expect(st == 1 && out.contains("cannot execute INSERT in a read-only transaction"), "\(out)")
        #expect(out.contains("[passed] sql app-db/postgres: select count(*) from t = 42"), "the other check still reads: \(out)")
    }
}


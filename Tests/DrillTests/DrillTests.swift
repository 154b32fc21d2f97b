import Foundation
import TestSupport
import Support
import Testing
@testable import Catalog
@testable import Drill
import Layout
import Policy

struct TargetTimeTests {
    static let now = Date(timeIntervalSince1970: 1_795_757_517)   // 2026-11-27 05:31:57 UTC

    @Test(arguments: [
        ("2026-11-27T04:20:00Z", 1_795_753_200.0),
        ("2026-11-27T05:20:00+01:00", 1_795_753_200.0),
        ("2026-11-27T00:20:00-0400", 1_795_753_200.0),
        ("2026-11-27T09:20:00+05", 1_795_753_200.0),
        ("2026-11-27 04:20:00", 1_795_753_200.0),
        ("2026-11-27 04:20:00.123456", 1_795_753_200.123456),
        ("2026-11-27t04:20:00.5z", 1_795_753_200.5),
    ])
    func absolute(_ text: String, _ epoch: Double) throws {
        let t = try #require(try TargetTime.parse(text, now: Self.now).date)
        #expect(abs(t.timeIntervalSince1970 - epoch) < 0.0000005, "\(text)")
    }

    @Test func relativeAndLatest() throws {
        #expect(try TargetTime.parse("latest", now: Self.now) == .latest)
        #expect(try TargetTime.parse("-2h", now: Self.now) == .time(Self.now.addingTimeInterval(-7200)))
        #expect(try TargetTime.parse("-90m", now: Self.now) == .time(Self.now.addingTimeInterval(-5400)))
        #expect(try TargetTime.parse("-1d", now: Self.now) == .time(Self.now.addingTimeInterval(-86400)))
        // A barman backup id: that backup's consistent point (a long-term tier's restore point).
        #expect(try TargetTime.parse("20261027T040000", now: Self.now) == .backup("20261027T040000"))
        #expect(throws: TargetTimeError.self) { try TargetTime.parse("20261027X040000", now: Self.now) }
    }

    @Test(arguments: ["yesterday", "2026-11-27", "2026-13-01 00:00:00", "2026-11-27T04:20:00+0", "-2", "-2x", "2026-11-27 04:20:00.", "2026-11-27T04:20:00Zjunk"])
    func rejected(_ text: String) {
        #expect(throws: TargetTimeError.self) { try TargetTime.parse(text, now: Self.now) }
    }

    /// PostgreSQL's form, with an explicit +00 and microseconds, never a `Z` (cloudnative-pg#10819).
    @Test func postgresForm() throws {
        let t = try #require(try TargetTime.parse("2026-11-27T05:20:00.000042+01:00", now: Self.now).date)
        #expect(TargetTime.postgres(t) == "2026-11-27 04:20:00.000042+00")
        #expect(TargetTime.rfc3339(t) == "2026-11-27T04:20:00.000042Z")
        #expect(RFC3339.parse(TargetTime.rfc3339(t)).map { abs($0.timeIntervalSince(t)) < 0.0000005 } == true)
    }
}

struct RestorePlannerTests {
    static let base = Date(timeIntervalSince1970: 1_795_750_000)
    static func at(_ s: Double) -> Date { base.addingTimeInterval(s) }
    static let mb: UInt64 = 16 << 20

    static func seg(_ n: UInt32, tli: UInt32 = 1) -> WALSegment { WALSegment(timeline: tli, log: 0, segment: n) }

    /// Segments 1...last on timeline 1, segment n written at n*100 s, minus `missing`.
    static func archive(last: UInt32, missing: Set<UInt32> = []) -> WALArchive {
        var a = WALArchive()
        for n in 1...last where !missing.contains(n) {
            let s = seg(n)
            a.segments[s] = .init(key: "cnpg/db/wals/\(s.hashDirectory)/\(s.name).gz", size: 1000, lastModified: at(Double(n) * 100))
        }
        return a
    }

    static func backup(_ id: String, status: String = "DONE", begin: UInt32, end: Double?, chainEnd: UInt32, gaps: [String] = [],
                       compression: String? = "gz", restorable: Bool = true) -> BarmanBackup {
        BarmanBackup(server: "db", backupID: id, name: nil, status: status, error: status == "FAILED" ? "failure upload" : nil,
                     beginTime: end.map { at($0 - 10) }, endTime: end.map(at), beginWAL: seg(begin).name, endWAL: seg(begin).name,
                     beginLSN: nil, endLSN: nil, timeline: 1, systemID: "1", pgVersion: 150018, size: 5000, compression: compression ?? "none",
                     archives: ["data"], archiveFiles: [ArchiveFile(name: "data", key: "cnpg/db/base/\(id)/data.tar\(compression.map { ".\($0)" } ?? "")", size: 5000, compression: compression)],
                     segmentSize: mb, walChainEnd: seg(chainEnd).name, walChainEndTime: at(Double(chainEnd) * 100), walGaps: gaps,
                     restorable: restorable && status == "DONE")
    }

    static func scan(_ backups: [BarmanBackup]) -> BarmanServerScan {
        BarmanServerScan(server: "db", backups: backups, walSegments: 0, partialSegments: [], timelines: [1], newestSegment: nil, unrecognised: 0, problems: [])
    }

    static let now = at(100_000)

    @Test func choosesNewestDoneBackupThatEndedBeforeTheTarget() throws {
        let s = Self.scan([Self.backup("A", begin: 2, end: 250, chainEnd: 9), Self.backup("B", begin: 5, end: 550, chainEnd: 9),
                           Self.backup("C", status: "FAILED", begin: 7, end: nil, chainEnd: 9), Self.backup("D", status: "STARTED", begin: 8, end: nil, chainEnd: 9)])
        let a = Self.archive(last: 9)
        // Between A's and B's end: A, and WAL from A's begin to the first segment written after T.
        var p = try RestorePlanner.plan(server: "db", scan: s, archive: a, target: .time(Self.at(420)), now: Self.now)
        #expect(p.backup.backupID == "A")
        #expect(p.wal.map(\.name) == (2...9).map { Self.seg($0).name })
        #expect(p.walNeeded == 4, "segments 2...5: 5 is the first written after T")
        #expect(p.pgMajor == 15 && p.target == "2026-11-27 03:33:40.000000+00")
        // After B's end: B, not the FAILED or STARTED ones after it (barman-cloud-restore 3.19.1 crashes here).
        p = try RestorePlanner.plan(server: "db", scan: s, archive: a, target: .time(Self.at(800)), now: Self.now)
        #expect(p.backup.backupID == "B")
        p = try RestorePlanner.plan(server: "db", scan: s, archive: a, target: .latest, now: Self.now)
        #expect(p.backup.backupID == "B" && p.walNeeded == p.wal.count)
    }

    @Test func refusesTargetsOutsideTheRecoverableRange() {
        let s = Self.scan([Self.backup("A", begin: 2, end: 250, chainEnd: 9)])
        let a = Self.archive(last: 9)
        func message(_ t: RecoveryTarget) -> String {
            do { _ = try RestorePlanner.plan(server: "db", scan: s, archive: a, target: t, now: Self.now); return "" } catch { return "\(error)" }
        }
        let before = message(.time(Self.at(100)))
        #expect(before.contains("before the first recoverable point") && before.contains(RFC3339.format(Self.at(250))) && before.contains(RFC3339.format(Self.at(900))), "\(before)")
        let after = message(.time(Self.at(950)))
        #expect(after.contains("after the newest recoverable point") && after.contains(RFC3339.format(Self.at(900))), "\(after)")
        #expect(message(.time(Self.now.addingTimeInterval(60))).contains("in the future"))
    }

    @Test func aGapBeforeTheTargetIsNamed() {
        let s = Self.scan([Self.backup("A", begin: 2, end: 250, chainEnd: 5, gaps: [Self.seg(6).name])])
        let a = Self.archive(last: 9, missing: [6])
        do {
            _ = try RestorePlanner.plan(server: "db", scan: s, archive: a, target: .time(Self.at(700)), now: Self.now)
            Issue.record("a target beyond the gap was accepted")
        } catch {
            #expect("\(error)".contains("WAL segment \(Self.seg(6).name) is missing"), "\(error)")
        }
        // Before the gap it plans, reading at most up to it.
        let p = try? RestorePlanner.plan(server: "db", scan: s, archive: a, target: .time(Self.at(420)), now: Self.now)
        #expect(p?.wal.last?.name == Self.seg(5).name)
    }

    @Test func unsupportedCompressionAndNothingRestorableAreClearErrors() {
        let a = Self.archive(last: 9)
        #expect(throws: PlanError.self) {
            try RestorePlanner.plan(server: "db", scan: Self.scan([Self.backup("A", begin: 2, end: 250, chainEnd: 9, compression: "zst")]), archive: a, target: .latest, now: Self.now)
        }
        do {
            _ = try RestorePlanner.plan(server: "db", scan: Self.scan([Self.backup("A", begin: 2, end: 250, chainEnd: 9, compression: "bz2")]), archive: a, target: .latest, now: Self.now)
        } catch {
            #expect("\(error)".contains("bzip2"))
        }
        do {
            _ = try RestorePlanner.plan(server: "db", scan: Self.scan([Self.backup("F", status: "FAILED", begin: 2, end: nil, chainEnd: 9)]), archive: a, target: .latest, now: Self.now)
            Issue.record("planned from a FAILED backup")
        } catch {
            #expect("\(error)".contains("no restorable base backup") && "\(error)".contains("F FAILED"))
        }
        // A plain tar plans.
        #expect((try? RestorePlanner.plan(server: "db", scan: Self.scan([Self.backup("P", begin: 2, end: 250, chainEnd: 9, compression: nil)]), archive: a, target: .latest, now: Self.now)) != nil)
    }
}

struct ExpectationTests {
    @Test func evaluates() throws {
        #expect(try #require(Expectation(">= 1")).evaluate("3").ok)
        #expect(!(try #require(Expectation(">= 1")).evaluate("0").ok))
        #expect(try #require(Expectation("= 42")).evaluate("42|x").ok)
        #expect(try #require(Expectation("!= 0")).evaluate("1").ok)
        #expect(try #require(Expectation("< 2.5")).evaluate("2").ok)
        #expect(try #require(Expectation("nonempty")).evaluate("a\nb").ok)
        #expect(!(try #require(Expectation("nonempty")).evaluate("").ok))
        #expect(try #require(Expectation("empty")).evaluate("").ok)
        #expect(!(try #require(Expectation("= 1")).evaluate("abc").ok))
        #expect(Expectation("about 3") == nil)
        // The grammar drctl lint enforces: plain decimals only, white space only after the operator.
        #expect(Expectation(">=1") != nil && Expectation("= -2.5") != nil)
        #expect(Expectation("= 1e5") == nil && Expectation("= nan") == nil && Expectation(" >= 1") == nil)
    }
}

struct SpoolTests {
    /// A segment handed out once is fetched directly the second time (PostgreSQL re-reads the
    /// last segment at the end of recovery), never waited for.
    @Test func takenSegmentsAreNotWaitedFor() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-spool-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "A\nB\n".write(toFile: dir + "/plan", atomically: true, encoding: .utf8)
        try "\(getpid())\n".write(toFile: dir + "/prefetcher.pid", atomically: true, encoding: .utf8)
        try "seg".write(toFile: dir + "/A", atomically: true, encoding: .utf8)
        guard case .moved = WALSpool.take("A", spool: dir, target: dir + "/out") else { Issue.record("A not moved"); return }
        let t0 = Date()
        guard case .notPlanned = WALSpool.take("A", spool: dir, target: dir + "/out2", timeout: 5) else { Issue.record("A again"); return }
        #expect(Date().timeIntervalSince(t0) < 1)
        guard case .notPlanned = WALSpool.take("C", spool: dir, target: dir + "/out3", timeout: 5) else { Issue.record("C"); return }
        try "boom".write(toFile: dir + "/B.error", atomically: true, encoding: .utf8)
        guard case .failed = WALSpool.take("B", spool: dir, target: dir + "/out4", timeout: 5) else { Issue.record("B"); return }
    }
}

/// restore_command is the one command line drctl hands to a shell (PostgreSQL runs it with
/// `sh -c`, after replacing `%f`, `%p`, `%r` and `%%`): hostile words come out of it unchanged.
@Suite struct RestoreCommandQuotingTests {
    @Test func hostileWordsSurviveThePostgresAndShellRoundTrip() throws {
        let words = ["/opt/drctl/bin/drctl", "wal-restore", "--source", "s3://b/it's here/$(touch /tmp/pwned)", "`id`", "a b\tc", "100%f done %%",
                     "--server", "x\"y;rm -rf /", "\\", "*", "~root", "new\nline"]
        let command = RecoveryServer.restoreCommand(["/usr/bin/printf", "%s\\n"] + words)
        // PostgreSQL's substitution, then its shell.
        var expanded = "", chars = Array(command), i = 0
        while i < chars.count {
            if chars[i] == "%", i + 1 < chars.count {
                switch chars[i + 1] {
                case "f": expanded += "000000010000000000000003"
                case "p": expanded += "pg_wal/RECOVERYXLOG"
                case "%": expanded += "%"
                default: expanded += "%" + String(chars[i + 1])
                }
                i += 2
            } else {
                expanded.append(chars[i])
                i += 1
            }
        }
        let (status, printed) = try run("/bin/sh", ["-c", expanded], timeout: 30)
        #expect(status == 0)
        #expect(printed == (words + ["000000010000000000000003", "pg_wal/RECOVERYXLOG"]).map { $0 + "\n" }.joined(), "\(printed)")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/pwned"))
    }
}


struct BackupConfigurationTests {
    @Test func settingNamesWithoutValues() {
        let text = """
            # Do not edit this file manually!
            archive_command = 'touch /tmp/x-%f'
              Primary_Conninfo='host=prod password=secret'
            include_dir 'conf.d'
            shared_preload_libraries = 'a'   # comment
            archive_command = 'again'

            = 'no name'
            """
        let names = BackupConfiguration.settingNames(text)
        #expect(names == ["archive_command", "primary_conninfo", "include_dir", "shared_preload_libraries"])
        #expect(!names.joined().contains("secret"))
        #expect(names.allSatisfy { BackupConfiguration.dangerous.contains($0) })
    }

    /// Every dangerous setting drctl can fix on the command line is fixed there.
    @Test func safetyOptionsCoverWhatRunsOrReachesOut() {
        let opts = BackupConfiguration.safetyOptions(major: 15, port: 5433, socketDirectory: "/s", hbaFile: "/h", identFile: "/i", restoreCommand: "drctl wal-restore %f %p")
        let set = Dictionary(stride(from: 0, to: opts.count, by: 2).map { i -> (String, String) in
            #expect(opts[i] == "-c")
            let kv = opts[i + 1].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (String(kv[0]), kv.count > 1 ? String(kv[1]) : "")
        }, uniquingKeysWith: { a, _ in a })
        for name in ["archive_mode", "archive_command", "archive_library", "restore_command", "shared_preload_libraries", "session_preload_libraries",
                     "local_preload_libraries", "listen_addresses", "primary_conninfo", "ssl_passphrase_command", "external_pid_file", "dynamic_library_path"] {
            #expect(set[name] != nil, "\(name) is not fixed on the command line")
        }
        #expect(set["archive_mode"] == "off" && set["archive_command"] == "" && set["listen_addresses"] == "127.0.0.1")
        #expect(set["restore_command"] == "drctl wal-restore %f %p")
        #expect(set["shared_preload_libraries"] == "", "nothing preloaded unless the policy says")
        let allowed = BackupConfiguration.safetyOptions(major: 15, port: 1, socketDirectory: "/s", hbaFile: "/h", identFile: "/i", restoreCommand: nil,
                                                        preload: ["pg_stat_statements", "timescaledb"])
        #expect(allowed.contains("shared_preload_libraries=pg_stat_statements,timescaledb") && allowed.contains("dynamic_library_path=$libdir"))
        // PostgreSQL 14 has no archive_library: naming it would stop the server.
        #expect(!BackupConfiguration.safetyOptions(major: 14, port: 1, socketDirectory: "/s", hbaFile: "/h", identFile: "/i", restoreCommand: nil)
            .contains { $0.hasPrefix("archive_library=") })
    }
}

struct PsqlArgumentsTests {
    /// Whatever the policy's text, psql gets it as a database name only.
    @Test func theDatabaseIsNeverAConnectionString() {
        let args = PsqlSession.arguments(host: "/sock", port: 5432, user: "postgres", database: "host=evil dbname='x'\\", sql: "select 1")
        let d = args[args.firstIndex(of: "-d")! + 1]
        #expect(d == #"dbname='host=evil dbname=\'x\'\\'"#)
        #expect(PsqlSession.options(statementTimeout: 5).contains("default_transaction_read_only=on"))
    }
}

struct FileTreeTests {
    /// Neither chown -R nor rm -rf goes through a link in the tree to what lies outside it.
    @Test func treeOperationsNeverFollowLinks() throws {
        let base = NSTemporaryDirectory() + "drctl-filetree-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: base) }
        try FileManager.default.createDirectory(atPath: base + "/tree/sub", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: base + "/outside", withIntermediateDirectories: true)
        try "keep".write(toFile: base + "/outside/file", atomically: true, encoding: .utf8)
        try "x".write(toFile: base + "/tree/sub/f", atomically: true, encoding: .utf8)
        #expect(symlink(base + "/outside", base + "/tree/sub/link") == 0)
        #expect(symlink(base + "/outside/file", base + "/tree/flink") == 0)
        if geteuid() == 0, let nobody = getpwnam("nobody") {
            try FileTree.chown(base + "/tree", uid: nobody.pointee.pw_uid, gid: nobody.pointee.pw_gid)
            var st = stat()
            #expect(lstat(base + "/tree/sub/f", &st) == 0 && st.st_uid == nobody.pointee.pw_uid)
            #expect(stat(base + "/outside/file", &st) == 0 && st.st_uid == 0, "chown followed a link")
            #expect(stat(base + "/outside", &st) == 0 && st.st_uid == 0)
        }
        #expect(FileTree.remove(base + "/tree"))
        #expect(!FileManager.default.fileExists(atPath: base + "/tree"))
        #expect((try? String(contentsOfFile: base + "/outside/file", encoding: .utf8)) == "keep", "rm -rf followed a link")
    }
}

struct ScratchOwnerTests {
    /// The owner id is made once and kept; a damaged file is replaced, not recursed on forever.
    @Test func ownerIDIsStableAndADamagedFileIsReplaced() throws {
        let dir = NSTemporaryDirectory() + "drctl-owner-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let id = try ScratchDirectory.ownerID(stateDirectory: dir)
        #expect(id.count == 32 && id.allSatisfy(\.isHexDigit))
        #expect(try ScratchDirectory.ownerID(stateDirectory: dir) == id)
        try "".write(toFile: dir + "/scratch-owner", atomically: true, encoding: .utf8)
        let fresh = try ScratchDirectory.ownerID(stateDirectory: dir)
        #expect(fresh.count == 32 && fresh != id)
        #expect(try ScratchDirectory.ownerID(stateDirectory: dir) == fresh)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["scratch-owner"], "no temporary file left")
    }
}

/// The disk a host restore asks for before it fetches anything.
struct ScratchSpaceTests {
    let seg: UInt64 = 16 << 20

    @Test func theDataDirectoryNeedsTheClusterSizeAndTheWALRecoveryKeeps() {
        let mib: Int64 = 1 << 20
        // barman's cluster_size wins over the (compressed) archives; WAL is capped at max_wal_size.
        #expect(ScratchSpace.dataDirectory(clusterSize: 500 * mib, archivedBytes: 100 * mib, walNeeded: 3, segmentSize: seg) == 500 * mib + 48 * mib + 64 * mib)
        #expect(ScratchSpace.dataDirectory(clusterSize: nil, archivedBytes: 100 * mib, walNeeded: 10_000, segmentSize: seg) == 100 * mib + 4096 * mib + 64 * mib)
        // A forged backup.info: a negative size counts as none, an absurd one does not overflow.
        #expect(ScratchSpace.dataDirectory(clusterSize: -5, archivedBytes: 1, walNeeded: 0, segmentSize: seg) == 1 + 64 * mib)
        #expect(ScratchSpace.dataDirectory(clusterSize: .max, archivedBytes: 1, walNeeded: .max, segmentSize: .max) == .max)
        #expect(ScratchSpace.spool(prefetchWindow: 16, segmentSize: seg) == 17 * 16 * mib)
    }

    @Test func needsOnOneFilesystemAreAddedUp() {
        let disks: [String: (bytes: Int64, device: UInt64)] = ["/scratch": (100, 1), "/scratch/data": (100, 1), "/big": (1000, 2)]
        let free = { (p: String) in disks[p] }
        #expect(ScratchSpace.shortfall([("data", "/scratch/data", 60), ("spool", "/scratch", 30)], free: free) == nil)
        let short = ScratchSpace.shortfall([("data", "/scratch/data", 60), ("spool", "/scratch", 50)], free: free)
        #expect(short?.contains("data about 60 B in /scratch/data and spool about 50 B in /scratch, but that filesystem has 100 B free") == true, "\(short ?? "")")
        #expect(ScratchSpace.shortfall([("data", "/big", 900), ("spool", "/scratch", 50)], free: free) == nil, "apart, each fits")
        #expect(ScratchSpace.free(at: NSTemporaryDirectory() + "/does/not/exist") != nil, "asks the nearest existing parent")
    }
}

struct SubprocessTests {
    /// A PostgreSQL server drctl starts outlives the call that started it: it must hold none of
    /// drctl's descriptors (a pipe another thread had open would never reach EOF).
    @Test func aLongLivedChildHoldsNoInheritedDescriptor() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let child = try Subprocess.spawn("/bin/sleep", ["20"], env: [:], newGroup: true)
        defer { kill(-child, SIGKILL); Subprocess.wait(child) }
        close(fds[1])
        var p = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 5_000) == 1, "the pipe reached EOF at once")
        var open: [String] = []
        #expect(waitUntil(100, every: 10_000) {
            open = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(child)/fd")) ?? []).sorted()
            return open == ["0", "1", "2"]
        }, "descriptors of the child: \(open)")
    }
}

/// What replay runs with: a drill flushes nothing, a real restore keeps durability; both read
/// ahead and stop for restartpoints only as often as the space check counts on.
struct ReplaySettingsTests {
    @Test func aDrillFlushesNothingARestoreKeepsDurability() {
        let drill = Dictionary(BackupConfiguration.replaySettings(major: 15, durable: false, sharedBuffersMB: 512).map { ($0.name, $0.value) }, uniquingKeysWith: { $1 })
        #expect(drill["fsync"] == "off" && drill["full_page_writes"] == "off" && drill["synchronous_commit"] == "off")
        #expect(drill["shared_buffers"] == "512MB" && drill["recovery_prefetch"] == "on" && drill["checkpoint_timeout"] == "1d")
        #expect(drill["max_wal_size"] == "\(ScratchSpace.walKept >> 20)MB", "what the space check counts on")
        let restore = Dictionary(BackupConfiguration.replaySettings(major: 15, durable: true, sharedBuffersMB: 512).map { ($0.name, $0.value) }, uniquingKeysWith: { $1 })
        #expect(restore["fsync"] == nil && restore["full_page_writes"] == nil && restore["synchronous_commit"] == nil && restore["shared_buffers"] == "512MB")
        let old = Dictionary(BackupConfiguration.replaySettings(major: 14, durable: true, sharedBuffersMB: 128).map { ($0.name, $0.value) }, uniquingKeysWith: { $1 })
        #expect(old["recovery_prefetch"] == nil && old["wal_decode_buffer_size"] == nil, "PostgreSQL 14 has neither")
        #expect(BackupConfiguration.sharedBuffersMB(memAvailableKB: nil) == 128)
        #expect(BackupConfiguration.sharedBuffersMB(memAvailableKB: 512 * 1024) == 128)
        #expect(BackupConfiguration.sharedBuffersMB(memAvailableKB: 8 * 1024 * 1024) == 1024)
        #expect(BackupConfiguration.sharedBuffersMB(memAvailableKB: 64 * 1024 * 1024) == 2048)
    }
}

/// The heartbeat writer: its session is built at each beat, so a Secret that is missing fails
/// that beat (and shows in the state the metrics read), and one mounted later is used at once.
struct HeartbeatWriterTests {
    final class Session: SQLSession, @unchecked Sendable {
        var sent: [String] = []
        func query(_ sql: String, database: String) throws -> String { sent.append("\(database): \(sql)"); return "" }
    }

    @Test func aMissingSecretFailsTheBeatNotTheWriter() throws {
        let session = Session()
        var mounted = false
        let h = BackupPolicy.Heartbeat(every: Located(TimeSpan(seconds: 60), SourceLocation(file: "p.yaml", line: 1, column: 1)), database: "app",
                                       secretName: "hb", host: nil, port: 5432, location: SourceLocation(file: "p.yaml", line: 1, column: 1))
        let w = HeartbeatWriter(workload: "app", cluster: "db", heartbeat: h) {
            guard mounted else { throw LocalError("/etc/drctl/secrets/hb/username is not readable") }
            return session
        }
        #expect(throws: (any Error).self) { try w.beat() }
        #expect(w.state.lastSuccess == nil && w.state.error?.contains("not readable") == true)
        mounted = true
        let now = Date()
        try w.beat(now: now)
        #expect(w.state.lastSuccess == now && w.state.error == nil && session.sent == ["app: INSERT INTO drctl.drctl_heartbeat DEFAULT VALUES"])
    }
}

/// Whether PostgreSQL's user can run drctl as its restore_command, judged from the path's modes.
struct RunAsReachTests {
    @Test func theFirstDirectoryTheUserCannotEnterIsNamed() throws {
        try #require(geteuid() == 0, "needs root: only root sees into another user's 0700 directory")
        let postgres = try RunAs(user: "postgres")
        let base = NSTemporaryDirectory() + "drctl-reach-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: base + "/open/closed", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        chmod(base, 0o755); chmod(base + "/open", 0o711); chmod(base + "/open/closed", 0o700)
        FileManager.default.createFile(atPath: base + "/open/tool", contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])
        FileManager.default.createFile(atPath: base + "/open/closed/tool", contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])
        FileManager.default.createFile(atPath: base + "/open/plain", contents: Data(), attributes: [.posixPermissions: 0o644])
        #expect(postgres.cannotReach(base + "/open/tool") == nil)
        #expect(postgres.cannotReach(base + "/open/closed/tool") == base + "/open/closed")
        #expect(postgres.cannotReach(base + "/open/plain") == base + "/open/plain", "not executable")
        #expect(postgres.cannotReach(base + "/open/missing") == base + "/open/missing")
    }
}

import Foundation
import SigV4
import Testing
import Layout
import ObjectStore
import TestSupport

/// A failover as CNPG does it: the primary is gone, a copy restored from the archive is promoted
/// and archives into the same server path on a new timeline. drctl follows the switch.
@Suite struct TimelineSwitchTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    @Test func promotedCopyContinuesTheChainOnANewTimeline() throws {
        let bin = "/opt/drctl-barman/bin"
        try #require(FileManager.default.isExecutableFile(atPath: "\(bin)/barman-cloud-restore"), "run scripts/install-deps.sh (barman-cloud venv)")
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "timeline")
        let dest = "s3://\(bucket)/cnpg"
        let archive = rgw.barmanArchiveCommand(dest: dest, server: "db")
        let creds = rgw.shellCredentials
        let env = rgw.environment

        let tmp = FileManager.default.temporaryDirectory.path
        let primary = "\(tmp)/drctl-test-pg-\(getpid())-primary", replica = "\(tmp)/drctl-test-pg-\(getpid())-promoted"
        let pgUp = packageRoot.appendingPathComponent("scripts/pg-up.sh").path, pgDown = packageRoot.appendingPathComponent("scripts/pg-down.sh").path
        defer { _ = try? run(pgDown, [primary, "--purge"]); _ = try? run(pgDown, [replica, "--purge"]) }
        let port = try freePort()
        let (up, upOut) = try run(pgUp, [primary, String(port), archive])
        try #require(up == 0, "\(upOut)")
        func psql(_ port: Int, _ sql: String) throws -> String {
            let (st, out) = try run("/usr/bin/psql", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-Atc", sql])
            #expect(st == 0, "\(sql): \(out)")
            return out.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        _ = try psql(port, "create table t(id int); insert into t select generate_series(1, 1000)")
        let (bst, bout) = try run("/usr/sbin/runuser", ["-u", "postgres", "--", "\(bin)/barman-cloud-backup", "--endpoint-url", rgw.endpoint,
                                                        "--immediate-checkpoint", "--gzip", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", dest, "db"], env: env)
        try #require(bst == 0, "\(bout)")
        _ = try psql(port, "insert into t values (2000)")
        let lastTL1 = try psql(port, "select pg_walfile_name(pg_switch_wal())")
        let layout = BarmanLayout(root: "cnpg")
        try rgw.waitArchived(lastTL1, s3: s3, bucket: bucket, server: "db")
        // The primary is lost.
        _ = try run(pgDown, [primary])

        // Restore the backup into a new data directory and promote it after replaying all WAL.
        try FileManager.default.createDirectory(atPath: replica, withIntermediateDirectories: true)
        _ = try run("/bin/chown", ["postgres:", replica])
        let (rst, rout) = try run("/usr/sbin/runuser", ["-u", "postgres", "--", "\(bin)/barman-cloud-restore", "--endpoint-url", rgw.endpoint,
                                                        dest, "db", "latest", "\(replica)/data"], env: env)
        try #require(rst == 0, "\(rout)")
        let port2 = try freePort()
        let restore = "\(creds) \(bin)/barman-cloud-wal-restore --endpoint-url \(rgw.endpoint) \(dest) db %f %p"
        let conf = """
            port = \(port2)
            unix_socket_directories = '\(replica)'
            restore_command = '\(restore.replacingOccurrences(of: "'", with: "''"))'
            recovery_target_timeline = 'latest'
            archive_command = '\(archive.replacingOccurrences(of: "'", with: "''"))'
            """
        try conf.write(toFile: "\(replica)/data/postgresql.auto.conf", atomically: true, encoding: .utf8)
        try #require(FileManager.default.createFile(atPath: "\(replica)/data/recovery.signal", contents: nil))
        _ = try run("/bin/chown", ["-R", "postgres:", "\(replica)/data"])
        _ = try run("/bin/chmod", ["700", "\(replica)/data"])
        let (sst, sout) = try run("/usr/sbin/runuser", ["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D", "\(replica)/data",
                                                        "-l", "\(replica)/postgres.log", "-w", "-t", "120", "start"])
        try #require(sst == 0, "\(sout) \((try? String(contentsOfFile: "\(replica)/postgres.log", encoding: .utf8)) ?? "")")
        try waitUntil(240, every: 250_000) { try psql(port2, "select pg_is_in_recovery()") != "t" }
        #expect(try psql(port2, "select count(*) from t") == "1001", "all committed rows replayed")
        #expect(try psql(port2, "select timeline_id from pg_control_checkpoint()") == "2")
        _ = try psql(port2, "insert into t values (3000)")
        let lastTL2 = try psql(port2, "select pg_walfile_name(pg_switch_wal())")
        #expect(lastTL2.hasPrefix("00000002"))
        try rgw.waitArchived(lastTL2, s3: s3, bucket: bucket, server: "db")

        let (st, out) = try run(drctlBinary, ["backups", "--source", dest, "--server", "db", "-o", "json"], env: env)
        try #require(st == 0, "\(out)")
        let server = try #require(((try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])?["barman"] as? [[String: Any]])?.first)
        #expect(server["timelines"] as? [Int] == [1, 2])
        let backup = try #require((server["backups"] as? [[String: Any]])?.first)
        #expect(backup["walChainEnd"] as? String == lastTL2, "the chain follows the switch to the newest TL2 segment")
        #expect(backup["walGaps"] as? [String] == [], "a timeline switch is not a gap")
        #expect(backup["restorable"] as? Bool == true)
        var keys: [String] = []
        try s3.listObjects(bucket: bucket, prefix: "cnpg/db/wals/") { keys += $0.objects.map(\.key) }
        #expect(keys.contains { layout.parse($0).map { if case .timelineHistory(_, 2, _) = $0 { return true } else { return false } } ?? false })
    }
}

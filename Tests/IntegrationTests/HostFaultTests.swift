import Foundation
import Testing
import ObjectStore
import TestSupport

/// Host drills under local faults: a full disk, PostgreSQL that cannot start or dies during
/// recovery, the scratch directory removed underneath. Each time: exit 1 with the cause named,
/// the evidence recorded as failed with it, nothing left behind.
@Suite(.serialized) struct HostFaultTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    /// `postgres` that behaves as the real one for `--version`, and otherwise as `body` says.
    static func fakePostgres(_ dir: String, _ body: String) throws -> String {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        let real = "/usr/lib/postgresql/15/bin"
        try """
            #!/bin/sh
            if [ "$1" = "--version" ]; then exec \(real)/postgres --version; fi
            \(body)
            """.write(toFile: dir + "/postgres", atomically: true, encoding: .utf8)
        chmod(dir + "/postgres", 0o755)
        for tool in ["psql", "pg_verifybackup"] { try? FileManager.default.createSymbolicLink(atPath: dir + "/" + tool, withDestinationPath: real + "/" + tool) }
        return dir
    }

    static func postgresUnder(_ path: String) throws -> Int {
        let (_, out) = try run("/bin/sh", ["-c", "ps -eo args | grep -c '[p]ostgres -D \(path)' || true"])
        return Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    @Test func localFaultsFailNamedAndLeaveNothing() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "hostfault")
        let dir = db.work + "/policies"
        try ServeTests.policy(db, dir: dir, drillSchedule: "0 6 * * *")
        func verify(_ scratch: String, _ extra: [String] = []) throws -> (Int32, String, [String: Any]?) {
            let (st, out) = try run(drctlBinary, ["verify", "app", "--policies", dir, "--scratch-dir", scratch, "-o", "json"] + extra, env: db.drctlEnvironment)
            // The evidence array on stdout, after the step log on stderr.
            let json = out.range(of: "[\n  {").flatMap { try? JSONSerialization.jsonObject(with: Data(out[$0.lowerBound...].utf8)) as? [[String: Any]] }?.first
            return (st, out, json)
        }
        func empty(_ path: String) -> Bool { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).isEmpty }

        // A full disk during unpack: a 4 MiB tmpfs cannot hold the restored cluster.
        let small = db.work + "/small"
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        let (mst, mout) = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=4m,mode=0711", "tmpfs", small])
        try #require(mst == 0, "mount tmpfs: \(mout)")
        defer { _ = try? run("/bin/umount", ["-l", small]) }
        var (st, out, ev) = try verify(small)
        #expect(st == 1 && out.contains("not enough disk for this restore") && !out.contains("fetching "), "refused before fetching: \(out)")
        #expect(empty(small))
        // Past the estimate (--skip-space-check), the disk really fills: named, and removed.
        (st, out, ev) = try verify(small, ["--skip-space-check"])
        #expect(st == 1 && out.contains("No space left on device"), "\(out)")
        #expect(ev?["result"] as? String == "failed" && (ev?["error"] as? String ?? "").contains("No space left on device"), "\(ev ?? [:])")
        #expect(empty(small), "the partial restore is removed: \((try? FileManager.default.contentsOfDirectory(atPath: small)) ?? [])")

        // A full disk during the WAL fetch: a tmpfs with room for the unpacked base backup plus
        // 8 MiB, less than one 16 MiB WAL segment.
        var base: [String] = []
        try db.s3.listObjects(bucket: db.bucket, prefix: "cnpg/app-db/base/") { base += $0.objects.map(\.key).filter { $0.hasSuffix("/data.tar.gz") } }
        let unpacked = db.work + "/measure"
        try FileManager.default.createDirectory(atPath: unpacked, withIntermediateDirectories: true)
        _ = try db.s3.download(S3URL(bucket: db.bucket, key: try #require(base.first)), to: db.work + "/data.tar.gz")
        let (xst, xout) = try run("/bin/tar", ["-xzf", db.work + "/data.tar.gz", "-C", unpacked])
        try #require(xst == 0, "\(xout)")
        let (_, du) = try run("/usr/bin/du", ["-s", "-B1", unpacked])
        let baseBytes = try #require(Int(du.split(separator: "\t").first ?? ""))
        let walRoom = db.work + "/walroom"
        try FileManager.default.createDirectory(atPath: walRoom, withIntermediateDirectories: true)
        let (wst, wout) = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(baseBytes + 8 << 20),mode=0711", "tmpfs", walRoom])
        try #require(wst == 0, "mount tmpfs: \(wout)")
        defer { _ = try? run("/bin/umount", ["-l", walRoom]) }
        (st, out, ev) = try verify(walRoom, ["--skip-space-check"])
        #expect(st == 1 && out.contains("No space left on device") && out.contains("WAL"), "\(out)")
        #expect(ev?["result"] as? String == "failed" && (ev?["error"] as? String ?? "").contains("No space left on device"), "\(ev ?? [:])")
        #expect(out.contains("base backup") && out.contains("unpacked"), "the base backup itself fits: \(out)")
        #expect(empty(walRoom), "nothing left: \((try? FileManager.default.contentsOfDirectory(atPath: walRoom)) ?? [])")
        #expect(try Self.postgresUnder(walRoom) == 0, "no postgres left")

        // PostgreSQL that cannot start.
        let scratch = db.work + "/scratch"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let failing = try Self.fakePostgres(db.work + "/pg-fails", "echo 'FATAL:  injected: could not start' >&2; exit 1")
        (st, out, ev) = try verify(scratch, ["--pg-bin", failing])
        #expect(st == 1 && out.contains("injected: could not start"), "\(out)")
        #expect(ev?["result"] as? String == "failed")
        #expect(empty(scratch))

        // PostgreSQL killed (SIGKILL) half a second into recovery.
        let dying = try Self.fakePostgres(db.work + "/pg-dies", "(sleep 0.5; kill -9 $$) & exec /usr/lib/postgresql/15/bin/postgres \"$@\"")
        (st, out, ev) = try verify(scratch, ["--pg-bin", dying])
        #expect(st == 1, "\(out)")
        #expect(ev?["result"] as? String == "failed" && !((ev?["error"] as? String) ?? "").isEmpty, "\(ev ?? [:])")
        #expect(empty(scratch))
        #expect(try Self.postgresUnder(scratch) == 0, "no postgres left")

        // The scratch directory removed while the drill waits for PostgreSQL to start.
        let slow = try Self.fakePostgres(db.work + "/pg-slow", "sleep 2; exec /usr/lib/postgresql/15/bin/postgres \"$@\"")
        let pid = try spawn(drctlBinary, ["verify", "app", "--policies", dir, "--scratch-dir", scratch, "--pg-bin", slow], env: db.drctlEnvironment,
                            output: db.work + "/removed.log")
        var removed = false
        for _ in 0..<200 {
            if let d = try FileManager.default.contentsOfDirectory(atPath: scratch).first(where: { $0.hasPrefix("drctl-drill-") }),
               (try? FileManager.default.contentsOfDirectory(atPath: scratch + "/" + d))?.isEmpty == false {
                usleep(300_000)
                _ = try run("/bin/rm", ["-rf", scratch + "/" + d])
                removed = true
                break
            }
            usleep(20_000)
        }
        #expect(removed)
        let raw = try reap(pid)
        let log = (try? String(contentsOfFile: db.work + "/removed.log", encoding: .utf8)) ?? ""
        #expect(exitCode(raw) == 1, "exit \(raw): \(log)")
        #expect(log.contains("drill of app FAILED"), "\(log)")
        #expect(empty(scratch))
        #expect(try Self.postgresUnder(scratch) == 0)
    }
}

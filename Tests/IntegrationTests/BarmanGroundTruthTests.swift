import Foundation
import Testing
import Layout
import ObjectStore
import TestSupport

/// Ground truth for the barman layout: a real PostgreSQL 15 archives through real barman-cloud
/// 3.19.1 into the real RGW; drctl's S3 client and Layout must understand all of it.
@Suite struct BarmanGroundTruthTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    static let barmanBin = "/opt/drctl-barman/bin"

    @Test func realBarmanArchiveIsFullyRecognised() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "\(Self.barmanBin)/barman-cloud-backup"), "run scripts/install-deps.sh (barman-cloud venv)")
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "barman")
        let dest = "s3://\(bucket)/cnpg"
        let archive = rgw.barmanArchiveCommand(dest: dest, server: "app-db")

        // Named after this process, so scripts/test can stop it if this run dies.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-test-pg-\(getpid())-\(UUID().uuidString.prefix(6))").path
        let port = try freePort()
        let (up, upOut) = try run(packageRoot.appendingPathComponent("scripts/pg-up.sh").path, [dir, String(port), archive])
        defer { _ = try? run(packageRoot.appendingPathComponent("scripts/pg-down.sh").path, [dir, "--purge"]) }
        let t0 = Date()
        func mark(_ what: String) { print("[\(Int(Date().timeIntervalSince(t0)))s] \(what)") }
        try #require(up == 0, "pg-up failed: \(upOut)")

        func psql(_ sql: String) throws -> String {
            let (st, out) = try run("/usr/bin/psql", ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-Atc", sql])
            #expect(st == 0, "\(sql): \(out)")
            return out.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        _ = try psql("create table t(id serial primary key, at timestamptz default now(), pad text); insert into t(pad) select repeat('x', 200) from generate_series(1, 20000)")
        _ = try psql("select pg_switch_wal()")
        mark("data loaded")

        let backupEnv = rgw.environment
        for extra in [[], ["--gzip"]] {
            // barman-cloud-backup reads PGDATA, so it runs as postgres like the server.
            let (st, out) = try run("/usr/sbin/runuser", ["-u", "postgres", "--", "\(Self.barmanBin)/barman-cloud-backup", "--endpoint-url", rgw.endpoint, "--immediate-checkpoint"]
                                    + extra + ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", dest, "app-db"], env: backupEnv)
            try #require(st == 0, "barman-cloud-backup \(extra): \(out)")
            mark("backup \(extra) done")
            _ = try psql("insert into t(pad) values ('after backup')")
            sleep(1)   // backup ids have one-second resolution
        }
        var lastSwitched = ""
        for _ in 0..<2 {
            _ = try psql("insert into t(pad) select repeat('y', 200) from generate_series(1, 1000)")
            // The segment the switch closed: the newest one the archive must end up with.
            lastSwitched = try psql("select pg_walfile_name(pg_switch_wal())")
        }
        // archive_command runs asynchronously: wait until the switched segment is in the bucket.
        let layout = BarmanLayout(root: "cnpg")
        try rgw.waitArchived(lastSwitched, s3: s3, bucket: bucket)
        var keys: [ObjectInfo] = []
        try s3.listObjects(bucket: bucket, prefix: "cnpg/") { keys += $0.objects }

        mark("archive listed")
        var infos: [String: BackupInfo] = [:]
        var segments = Set<WALSegment>()
        var archives: [String: Compression?] = [:]
        var histories = 0
        for o in keys {
            let parsed = try #require(layout.parse(o.key), "drctl does not recognise \(o.key)")
            #expect(layout.key(for: parsed) == o.key)
            switch parsed {
            case .backupInfo(_, let id):
                var text: [UInt8] = []
                try s3.getObject(S3URL(bucket: bucket, key: o.key)) { text += $0 }
                infos[id] = try BackupInfo(parsing: String(decoding: text, as: UTF8.self))
            case .backupArchive(_, let id, let name, let c):
                #expect(name == "data")
                archives[id] = c
            case .walSegment(_, let seg, let c):
                #expect(c == .gzip)
                segments.insert(seg)
            case .backupHistory:
                histories += 1
            default:
                break
            }
        }
        #expect(infos.count == 2)
        #expect(histories == 2, "one .backup file per finished backup")
        let sysid = try psql("select system_identifier from pg_control_system()")
        for (id, info) in infos {
            #expect(info.status == .done, "\(id): \(info.statusText)")
            #expect(info.systemID == sysid)
            #expect(info.version.map { $0 / 10000 } == 15)
            #expect(info.segmentSize == 16 << 20)
            let begin = try #require(info.beginWAL), end = try #require(info.endWAL)
            #expect(info.beginTime! <= info.endTime!)
            #expect(info.beginLSN! <= info.endLSN!)
            #expect(segments.contains(begin) && segments.contains(end), "WAL \(begin)...\(end) of \(id) is in the archive")
        }
        // The suffix is the only record of compression: one plain, one gzip backup.
        #expect(Set(archives.values.map { $0?.rawValue ?? "none" }) == ["none", "gz"])
        #expect(infos.values.allSatisfy { $0["compression"] == PyValue.none })

        // drctl backups reports exactly what the backup.info objects say.
        let drctlEnv = rgw.environment
        func report() throws -> [String: Any] {
            let (st, out) = try run(drctlBinary, ["backups", "--source", dest, "--server", "app-db", "-o", "json"], env: drctlEnv)
            try #require(st == 0, "\(out)")
            let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
            return (json["barman"] as! [[String: Any]])[0]
        }
        let newest = try #require(segments.max())
        let server = try report()
        #expect(server["newestSegment"] as? String == newest.name)
        let reported = server["backups"] as! [[String: Any]]
        #expect(Set(reported.map { $0["backupID"] as! String }) == Set(infos.keys))
        let iso = ISO8601DateFormatter()
        iso.formatOptions = [.withInternetDateTime]
        for b in reported {
            let info = try #require(infos[b["backupID"] as? String ?? ""])
            #expect(b["status"] as? String == "DONE")
            #expect(b["beginWAL"] as? String == info.beginWAL?.name && b["endWAL"] as? String == info.endWAL?.name)
            #expect(b["beginLSN"] as? String == info.beginLSN?.description && b["endLSN"] as? String == info.endLSN?.description)
            #expect((b["timeline"] as? Int).map(UInt32.init) == info.timeline)
            #expect(b["endTime"] as? String == iso.string(from: Date(timeIntervalSince1970: floor(info.endTime!.timeIntervalSince1970))))
            let tarSize = keys.filter { $0.key.hasPrefix("cnpg/app-db/base/\(b["backupID"] as! String)/data.tar") }.reduce(Int64(0)) { $0 + $1.size }
            #expect((b["size"] as? Int).map(Int64.init) == tarSize)
            #expect(b["walChainEnd"] as? String == newest.name, "the chain ends at the newest archived segment")
            #expect((b["walGaps"] as? [String])?.isEmpty == true && b["restorable"] as? Bool == true)
        }

        // The catalog: an index that answers exactly as the bucket does.
        let catalog = tempPath("catalog.sqlite")
        defer { for suffix in ["", "-wal", "-shm", ".lock"] { unlink(catalog + suffix) } }
        func syncJSON(_ verb: String = "sync") throws -> [[String: Any]] {
            let (st, out) = try run(drctlBinary, ["catalog", verb, "--source", dest, "--catalog", catalog, "-o", "json"], env: drctlEnv)
            try #require(st == 0, "\(out)")
            return try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]], "\(out)")
        }
        func backupsJSON(catalog useCatalog: Bool) throws -> String {
            let (st, out) = try run(drctlBinary, ["backups", "--source", dest, "--server", "app-db", "-o", "json"] + (useCatalog ? ["--catalog", catalog] : []), env: drctlEnv)
            #expect(st == 0, "\(out)")
            return out
        }
        let first = try syncJSON()
        #expect(first[0]["fetched"] as? Int == 2, "the two backup.info files")
        let direct = try backupsJSON(catalog: false)
        #expect(try backupsJSON(catalog: true) == direct)
        #expect(try syncJSON()[0]["fetched"] as? Int == 0, "an unchanged bucket costs a listing, no GETs")
        #expect(try syncJSON("rebuild")[0]["fetched"] as? Int == 2)
        #expect(try backupsJSON(catalog: true) == direct, "rebuilt from the bucket alone")
        // SIGKILL at random points, then one more sync: the same answer as an uninterrupted run.
        for i in 0..<6 {
            if i % 2 == 0 { for suffix in ["", "-wal", "-shm"] { unlink(catalog + suffix) } }
            let pid = try spawn(drctlBinary, ["catalog", "sync", "--source", dest, "--catalog", catalog], env: drctlEnv)
            usleep(useconds_t.random(in: 5_000...150_000))
            kill(pid, SIGKILL)
            try reap(pid)
        }
        _ = try syncJSON()
        #expect(try backupsJSON(catalog: true) == direct, "converged after interrupted syncs")

        // drctl status from policies that describe this archive.
        let policyDir = tempPath("policies")
        try FileManager.default.createDirectory(atPath: policyDir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: policyDir) }
        try (rgw.objectStorePolicy(bucket: bucket) + RGW.appPolicy(cluster: "app-db") + """
            ---
            apiVersion: drctl.dev/v1alpha1
            kind: BackupPolicy
            metadata: {name: never-backed-up}
            spec:
              objectStore: rgw
              namespaces: [other]
              objectives: {rpo: 24h, rto: 1h}
              velero:
                schedules: [{tier: daily, schedule: "0 2 * * *", retention: 7d}]
            """).write(toFile: "\(policyDir)/p.yaml", atomically: true, encoding: .utf8)
        var statusEnv = drctlEnv
        statusEnv.removeValue(forKey: "AWS_ENDPOINT_URL")   // the endpoint comes from the policy
        func status() throws -> (Int32, [String: [String: Any]]) {
            let (st, out) = try run(drctlBinary, ["status", "--policies", policyDir, "-o", "json"], env: statusEnv)
            let list = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]], "\(out)")
            return (st, Dictionary(uniqueKeysWithValues: list.map { ($0["workload"] as! String, $0) }))
        }
        var (st, ws) = try status()
        #expect(st == 4, "not every workload is PROTECTED")
        #expect(ws["app"]?["status"] as? String == "PROTECTED", "\(ws["app"] ?? [:])")
        #expect((ws["app"]?["recoverablePointEvidence"] as? String)?.contains(newest.name) == true)
        #expect((ws["app"]?["rpoSeconds"] as? Int).map { $0 < 3600 } == true)
        #expect(ws["never-backed-up"]?["status"] as? String == "NOT CONFIGURED")
        // By workload name, through the policies: the same answer as the ad-hoc addressing.
        let (bst2, byWorkload) = try run(drctlBinary, ["backups", "--policies", policyDir, "app", "-o", "json"], env: statusEnv)
        #expect(bst2 == 0 && byWorkload == direct, "\(byWorkload)")

        // Delete one segment from the middle (after both backups' own WAL): the gap is named.
        let lastEnd = try #require(infos.values.compactMap(\.endWAL).max())
        let middle = try #require(segments.sorted().first { $0 > lastEnd && $0 < newest }, "no segment between \(lastEnd) and \(newest)")
        try s3.deleteObject(S3URL(bucket: bucket, key: layout.key(for: .walSegment(server: "app-db", segment: middle, compression: .gzip))))
        for b in try report()["backups"] as! [[String: Any]] {
            #expect(b["walGaps"] as? [String] == [middle.name])
            #expect(b["walChainEnd"] as? String == WALSegment(timeline: middle.timeline, log: middle.log, segment: middle.segment - 1).name)
            #expect(b["restorable"] as? Bool == true, "its own WAL is intact")
        }
        let (_, table) = try run(drctlBinary, ["backups", "--source", dest, "--server", "app-db"], env: drctlEnv)
        #expect(table.contains(middle.name) && table.contains("RESTORABLE"), "\(table)")
        _ = try syncJSON()
        #expect(try backupsJSON(catalog: true) == (try backupsJSON(catalog: false)), "the sync saw the deletion")
        (st, ws) = try status()
        #expect(ws["app"]?["status"] as? String == "BROKEN")
        #expect((ws["app"]?["reasons"] as? [String])?.contains { $0.contains("WAL segment \(middle.name) is missing") } == true, "\(ws["app"] ?? [:])")
        let (_, statusTable) = try run(drctlBinary, ["status", "--policies", policyDir], env: statusEnv)
        #expect(statusTable.contains("BROKEN") && statusTable.contains(middle.name), "\(statusTable)")
    }
}

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
        let env = "AWS_ACCESS_KEY_ID=\(rgw.accessKey) AWS_SECRET_ACCESS_KEY='\(rgw.secretKey)' AWS_DEFAULT_REGION=us-east-1"
        let archive = "\(env) \(Self.barmanBin)/barman-cloud-wal-archive --endpoint-url \(rgw.endpoint) --gzip \(dest) app-db %p"

        let dir = tempPath("pg")
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

        var backupEnv = ProcessInfo.processInfo.environment
        backupEnv["AWS_ACCESS_KEY_ID"] = rgw.accessKey
        backupEnv["AWS_SECRET_ACCESS_KEY"] = rgw.secretKey
        backupEnv["AWS_DEFAULT_REGION"] = "us-east-1"
        for extra in [[], ["--gzip"]] {
            // barman-cloud-backup reads PGDATA, so it runs as postgres like the server.
            let (st, out) = try run("/usr/sbin/runuser", ["-u", "postgres", "--", "\(Self.barmanBin)/barman-cloud-backup", "--endpoint-url", rgw.endpoint, "--immediate-checkpoint"]
                                    + extra + ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", dest, "app-db"], env: backupEnv)
            try #require(st == 0, "barman-cloud-backup \(extra): \(out)")
            mark("backup \(extra) done")
            _ = try psql("insert into t(pad) values ('after backup')")
            sleep(1)   // backup ids have one-second resolution
        }
        _ = try psql("select pg_switch_wal()")
        // archive_command runs asynchronously: wait until the switched segment is in the bucket.
        let layout = BarmanLayout(root: "cnpg")
        var keys: [ObjectInfo] = []
        for _ in 0..<60 {
            keys = []
            try s3.listObjects(bucket: bucket, prefix: "cnpg/") { keys += $0.objects }
            if try psql("select last_archived_wal from pg_stat_archiver").split(separator: "\n").allSatisfy({ name in
                keys.contains { $0.key.contains(String(name)) } }) { break }
            usleep(250_000)
        }

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
    }
}

import Foundation
import Testing
import Layout
import ObjectStore
import TestSupport

/// drctl prune against barman-cloud-backup-delete --dry-run on the same bucket and policy.
@Suite struct PruneDifferentialTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    struct Spec {
        var daysAgo: Double
        var status: String
        var timeline: UInt32
        var beginSegment: UInt32
    }

    static func stamp(_ d: Date, _ format: String) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = format
        return f.string(from: d)
    }

    /// A backup.info as barman-cloud 3.19.1 writes it (keys sorted, Python literals).
    static func info(_ s: Spec, begin: Date, end: Date, seg: WALSegment) -> String {
        let done = s.status == "DONE"
        let t = { (d: Date) in stamp(d, "yyyy-MM-dd HH:mm:ss.SSSSSS") + "+00:00" }
        return """
            backup_label=\(done ? "'START WAL LOCATION: 0/\(String(seg.segment, radix: 16, uppercase: true))000028 (file \(seg.name))\\nSTART TIMELINE: \(s.timeline)\\n'" : "None")
            backup_name=\(done ? "nightly" : "None")
            begin_offset=40
            begin_time=\(t(begin))
            begin_wal=\(seg.name)
            begin_xlog=0/\(String(seg.segment, radix: 16, uppercase: true))000028
            children_backup_ids=None
            cluster_size=49630921
            compression=None
            copy_stats=None
            data_checksums=on
            deduplicated_size=None
            encryption=None
            end_offset=\(done ? "312" : "None")
            end_time=\(done ? t(end) : "None")
            end_wal=\(done ? seg.name : "None")
            end_xlog=\(done ? "0/\(String(seg.segment, radix: 16, uppercase: true))000138" : "None")
            error=\(s.status == "FAILED" ? "'failure uploading data (injected)'" : "None")
            mode=None
            parent_backup_id=None
            pgdata=/var/lib/postgresql/data/pgdata
            server_name=cloud
            size=None
            status=\(s.status)
            summarize_wal=None
            systemid=7712701172763930128
            tablespaces=None
            timeline=\(s.timeline)
            version=150018
            xlog_segment_size=16777216

            """
    }

    /// Writes one history: WAL on timeline 1 (and 2 from segment 0x40, when a spec uses it), and the backups.
    /// `lock` gives the Object Lock (mode, until) to write an object with, by key.
    static func write(_ specs: [Spec], s3: S3Client, bucket: String, server: String, now: Date,
                      lock: @escaping (String) -> (mode: String, until: Date)? = { _ in nil }) throws {
        let layout = BarmanLayout(root: "cnpg")
        let s3 = LockingWriter(s3: s3, lock: lock)
        let usesTL2 = specs.contains { $0.timeline == 2 }
        for n in UInt32(1)...UInt32(usesTL2 ? 0x50 : 0x40) {
            let tli: UInt32 = usesTL2 && n >= 0x40 ? 2 : 1
            let seg = WALSegment(timeline: tli, log: 0, segment: n)
            try s3.putObject(S3URL(bucket: bucket, key: layout.key(for: .walSegment(server: server, segment: seg, compression: .gzip))), bytes: [1])
        }
        if usesTL2 {
            try s3.putObject(S3URL(bucket: bucket, key: layout.key(for: .partialSegment(server: server, segment: WALSegment(timeline: 1, log: 0, segment: 0x40), compression: .gzip))), bytes: [1])
            try s3.putObject(S3URL(bucket: bucket, key: "cnpg/\(server)/wals/00000002.history"), bytes: Array("1\t0/40000A0\tno recovery target specified\n".utf8))
        }
        for s in specs {
            let begin = now.addingTimeInterval(-s.daysAgo * 86400)
            let id = stamp(begin, "yyyyMMdd'T'HHmmss")
            let seg = WALSegment(timeline: s.timeline, log: 0, segment: s.beginSegment)
            try s3.putObject(S3URL(bucket: bucket, key: layout.backupInfoKey(server: server, backupID: id)),
                             bytes: Array(info(s, begin: begin, end: begin.addingTimeInterval(30), seg: seg).utf8))
            if s.status == "DONE" {
                try s3.putObject(S3URL(bucket: bucket, key: layout.key(for: .backupArchive(server: server, backupID: id, name: "data", compression: .gzip))), bytes: [2])
                try s3.putObject(S3URL(bucket: bucket, key: layout.key(for: .backupHistory(server: server, segment: seg, offset: 0x28, compression: .gzip))), bytes: [3])
            }
        }
    }

    static let histories: [(name: String, specs: [Spec], minimumRedundancy: Int)] = [
        ("weekly backups, window 7d", [Spec(daysAgo: 35, status: "DONE", timeline: 1, beginSegment: 2), Spec(daysAgo: 28, status: "DONE", timeline: 1, beginSegment: 8),
                                       Spec(daysAgo: 21, status: "DONE", timeline: 1, beginSegment: 0x10), Spec(daysAgo: 14, status: "DONE", timeline: 1, beginSegment: 0x18),
                                       Spec(daysAgo: 7.5, status: "DONE", timeline: 1, beginSegment: 0x20), Spec(daysAgo: 3, status: "DONE", timeline: 1, beginSegment: 0x28)], 0),
        ("failed and crashed backups in between", [Spec(daysAgo: 20, status: "DONE", timeline: 1, beginSegment: 4), Spec(daysAgo: 18, status: "FAILED", timeline: 1, beginSegment: 6),
                                                   Spec(daysAgo: 15, status: "DONE", timeline: 1, beginSegment: 0x0A), Spec(daysAgo: 12, status: "STARTED", timeline: 1, beginSegment: 0x0E),
                                                   Spec(daysAgo: 9, status: "DONE", timeline: 1, beginSegment: 0x14), Spec(daysAgo: 2, status: "FAILED", timeline: 1, beginSegment: 0x30)], 0),
        ("minimum redundancy 3", [Spec(daysAgo: 40, status: "DONE", timeline: 1, beginSegment: 2), Spec(daysAgo: 30, status: "DONE", timeline: 1, beginSegment: 6),
                                  Spec(daysAgo: 20, status: "DONE", timeline: 1, beginSegment: 0x0C), Spec(daysAgo: 10, status: "DONE", timeline: 1, beginSegment: 0x12)], 3),
        ("everything older than the window", [Spec(daysAgo: 30, status: "DONE", timeline: 1, beginSegment: 3), Spec(daysAgo: 25, status: "DONE", timeline: 1, beginSegment: 9),
                                              Spec(daysAgo: 20, status: "DONE", timeline: 1, beginSegment: 0x11)], 0),
        ("a timeline switch", [Spec(daysAgo: 30, status: "DONE", timeline: 1, beginSegment: 4), Spec(daysAgo: 20, status: "DONE", timeline: 1, beginSegment: 0x20),
                               Spec(daysAgo: 10, status: "DONE", timeline: 2, beginSegment: 0x42), Spec(daysAgo: 1, status: "DONE", timeline: 2, beginSegment: 0x48)], 0),
    ]

    @Test("prune matches barman-cloud-backup-delete --dry-run", arguments: 0..<5)
    func matchesBarman(index: Int) throws {
        let barman = "/opt/drctl-barman/bin/barman-cloud-backup-delete"
        try #require(FileManager.default.isExecutableFile(atPath: barman), "run scripts/install-deps.sh (barman-cloud venv)")
        let (name, specs, minimum) = Self.histories[index]
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "prune")
        let now = Date()
        try Self.write(specs, s3: s3, bucket: bucket, server: "db", now: now)
        var listed: [String] = []
        try s3.listObjects(bucket: bucket, prefix: "cnpg/db/") { listed += $0.objects.map(\.key) }

        var env = rgw.environment
        let (st, out) = try run(barman, ["--endpoint-url", rgw.endpoint, "--dry-run", "-r", "RECOVERY WINDOW OF 7 DAYS"]
                                + (minimum > 0 ? ["-m", String(minimum)] : []) + ["s3://\(bucket)/cnpg", "db"], env: env)
        try #require(st == 0, "barman: \(out)")
        var barmanKeys = Set<String>()
        for line in out.split(separator: "\n") where line.hasPrefix("Skipping deletion of") {
            if let r = line.range(of: "under prefix ") {
                let prefix = line[r.upperBound...].replacingOccurrences(of: " due to --dry-run option", with: "")
                barmanKeys.formUnion(listed.filter { $0.hasPrefix(prefix) })
            } else {
                let regex = try NSRegularExpression(pattern: "'([^']*)'")
                let text = String(line)
                for m in regex.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                    barmanKeys.insert(String(text[Range(m.range(at: 1), in: text)!]))
                }
            }
        }

        env["AWS_ENDPOINT_URL"] = rgw.endpoint
        let (dst, dout) = try run(drctlBinary, ["prune", "--source", "s3://\(bucket)/cnpg", "--server", "db", "--retention", "7d",
                                                "--minimum-redundancy", String(minimum), "-o", "json", "--trust-unproven"], env: env)
        try #require(dst == 0, "\(dout)")
        let plan = try #require(try JSONSerialization.jsonObject(with: Data(dout.utf8)) as? [String: Any])
        let drctlKeys = Set(plan["keysToDelete"] as? [String] ?? [])
        #expect(drctlKeys == barmanKeys, "\(name): only drctl \(drctlKeys.subtracting(barmanKeys).sorted()), only barman \(barmanKeys.subtracting(drctlKeys).sorted())")
        if index != 1 { #expect(!barmanKeys.isEmpty || minimum > 0, "\(name): the history should delete something") }

        // The newest restore point always survives.
        let newestDone = specs.filter { $0.status == "DONE" }.min { $0.daysAgo < $1.daysAgo }!
        let newestID = Self.stamp(now.addingTimeInterval(-newestDone.daysAgo * 86400), "yyyyMMdd'T'HHmmss")
        #expect(!drctlKeys.contains { $0.contains(newestID) })
    }

    @Test func applyDeletesExactlyThePlanAndRecordsIt() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "prune-apply")
        try Self.write(Self.histories[0].specs, s3: s3, bucket: bucket, server: "db", now: Date())
        let env = rgw.environment
        // barman's mechanics on synthetic backups no drill can restore: decided on backup.info.
        let args = ["prune", "--source", "s3://\(bucket)/cnpg", "--server", "db", "--retention", "7d", "-o", "json", "--trust-unproven"]
        let (_, planOut) = try run(drctlBinary, args, env: env)
        let plan = try #require(try JSONSerialization.jsonObject(with: Data(planOut.utf8)) as? [String: Any])
        let keys = Set(plan["keysToDelete"] as! [String])
        var before = Set<String>()
        try s3.listObjects(bucket: bucket, prefix: "cnpg/") { before.formUnion($0.objects.map(\.key)) }
        let (st, out) = try run(drctlBinary, args + ["--apply"], env: env)
        #expect(st == 0, "\(out)")
        var after = Set<String>()
        try s3.listObjects(bucket: bucket, prefix: "cnpg/") { after.formUnion($0.objects.map(\.key)) }
        #expect(before.subtracting(after) == keys, "deleted exactly the plan")
        var records: [String] = []
        try s3.listObjects(bucket: bucket, prefix: "drctl/prune/db/") { records += $0.objects.map(\.key) }
        // The plan, written before deleting, and its outcome, written after.
        #expect(records.count == 2 && records.filter { $0.hasSuffix(".done.json") }.count == 1, "\(records)")
        // Nothing left to prune.
        let (_, again) = try run(drctlBinary, args, env: env)
        #expect((try JSONSerialization.jsonObject(with: Data(again.utf8)) as? [String: Any])?["keysToDelete"] as? [String] == [])
    }
}

/// putObject with the Object Lock `lock` gives each key.
struct LockingWriter {
    let s3: S3Client
    let lock: (String) -> (mode: String, until: Date)?
    func putObject(_ url: S3URL, bytes: [UInt8]) throws {
        try s3.putObject(url, bytes: bytes, retention: lock(url.key))
    }
}

/// Object Lock on a real RGW bucket: prune keeps what the lock protects (a backup whole, with the
/// WAL it needs), deletes the rest by version so no data stays behind a delete marker, and a
/// later prune takes what a lock that ended no longer protects.
@Suite struct PruneObjectLockTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    /// Every version and delete marker under `prefix` (boto3: drctl's client lists current objects only).
    func versions(_ bucket: String, _ prefix: String) throws -> [String] {
        let script = """
            import boto3, os, sys
            s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
            r = s3.list_object_versions(Bucket=sys.argv[1], Prefix=sys.argv[2])
            for v in r.get("Versions", []): print("version", v["Key"])
            for m in r.get("DeleteMarkers", []): print("marker", m["Key"])
            """
        var env = rgw.environment
        env["AWS_ENDPOINT_URL"] = rgw.endpoint
        let (st, out) = try run(toolsPython, ["-c", script, bucket, prefix], env: env)
        try #require(st == 0, "\(out)")
        return out.split(separator: "\n").map(String.init).sorted()
    }

    @Test func pruneKeepsWhatObjectLockProtects() throws {
        let s3 = try rgw.client()
        let bucket = "lock-\(UInt32.random(in: 0...UInt32.max))"
        try s3.createBucket(bucket, objectLock: BucketObjectLock(enabled: true))
        #expect(try s3.objectLockConfiguration(bucket: bucket) == BucketObjectLock(enabled: true))
        let now = Date()
        let specs = PruneDifferentialTests.histories[0].specs
        let lockedBackup = PruneDifferentialTests.stamp(now.addingTimeInterval(-28 * 86400), "yyyyMMdd'T'HHmmss")
        let lockedWAL = "cnpg/db/wals/0000000100000000/000000010000000000000001.gz"
        let lockEnds = now.addingTimeInterval(30)
        try PruneDifferentialTests.write(specs, s3: s3, bucket: bucket, server: "db", now: now) { key in
            key.contains("/base/\(lockedBackup)/data") || key == lockedWAL ? ("GOVERNANCE", lockEnds) : nil
        }
        // And a legal hold, which has no end date, on another segment that retention selects.
        let heldWAL = "cnpg/db/wals/0000000100000000/000000010000000000000003.gz"
        var pyEnv = rgw.environment
        pyEnv["AWS_ENDPOINT_URL"] = rgw.endpoint
        let (hst, hout) = try run(toolsPython, ["-c", """
            import boto3, os, sys
            boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1").put_object_legal_hold(
                Bucket=sys.argv[1], Key=sys.argv[2], LegalHold={"Status": "ON"})
            """, bucket, heldWAL], env: pyEnv)
        try #require(hst == 0, "\(hout)")
        #expect(try s3.headObject(S3URL(bucket: bucket, key: heldWAL)).lock?.legalHold == true)
        let env = rgw.environment
        let args = ["prune", "--source", "s3://\(bucket)/cnpg", "--server", "db", "--retention", "7d", "--trust-unproven"]
        func plan() throws -> [String: Any] {
            let (st, out) = try run(drctlBinary, args + ["-o", "json"], env: env)
            try #require(st == 0, "\(out)")
            return try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        }
        func listing() throws -> Set<String> {
            var keys = Set<String>()
            try s3.listObjects(bucket: bucket, prefix: "cnpg/") { keys.formUnion($0.objects.map(\.key)) }
            return keys
        }

        let p = try plan()
        let report = p["report"] as? [String: String] ?? [:]
        #expect(report[lockedBackup] == "OBSOLETE_LOCKED", "\(report)")
        let locked = (p["locked"] as? [[String: Any]] ?? []).compactMap { $0["key"] as? String }
        #expect(Set(locked) == [lockedWAL, heldWAL, "cnpg/db/base/\(lockedBackup)/data.tar.gz"], "\(locked)")
        let keys = Set(p["keysToDelete"] as? [String] ?? [])
        #expect(!keys.isEmpty && !keys.contains { $0.contains(lockedBackup) } && !keys.contains(lockedWAL) && !keys.contains(heldWAL))

        let before = try listing()
        let (st, out) = try run(drctlBinary, args + ["--apply"], env: env)
        #expect(st == 0, "\(out)")
        print("$ drctl \(args.joined(separator: " ")) --apply\n\(out)")
        #expect(out.contains("keeping 3 objects retention selected, under Object Lock: 2 until ") && out.contains("1 under legal hold")
                && !out.contains("not deleted"), "\(out)")
        let after = try listing()
        #expect(before.subtracting(after) == keys, "deleted exactly the plan, nothing locked")
        #expect(after.contains("cnpg/db/base/\(lockedBackup)/backup.info"), "the locked backup is kept whole")
        // Deleted by version: no data kept behind delete markers.
        let left = try versions(bucket, "cnpg/")
        #expect(!left.contains { $0.hasPrefix("marker") }, "\(left.filter { $0.hasPrefix("marker") })")
        #expect(left.count == after.count, "one version per object still listed")

        // Once the locks end, the next prune deletes that backup and, with it, the WAL only it needed.
        Thread.sleep(until: lockEnds.addingTimeInterval(1))
        let (st2, out2) = try run(drctlBinary, args + ["--apply"], env: env)
        #expect(st2 == 0, "\(out2)")
        let final = try listing()
        #expect(!final.contains(lockedWAL) && !final.contains { $0.contains(lockedBackup) }, "\(out2)")
        #expect(final.contains(heldWAL) && out2.contains("keeping 1 object retention selected, under Object Lock: 1 under legal hold"), "a legal hold has no end: \(out2)")
        #expect(try versions(bucket, "cnpg/").count == final.count)
    }
}

/// `drctl status` reports whether the bucket locks the barman-cloud archive, and a workload
/// whose store policy requires Object Lock is AT RISK when the bucket does not enforce it.
@Suite struct StatusObjectLockTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    func status(bucket: String, requirement: String) throws -> [String: Any] {
        let out = try status(bucket: bucket, requirement: requirement, table: false)
        let list = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]], "\(out)")
        return try #require(list.first)
    }

    func status(bucket: String, requirement: String, table: Bool) throws -> String {
        let dir = tempPath("lockpolicy")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try (rgw.objectStorePolicy(bucket: bucket, extra: requirement.isEmpty ? "" : "  objectLock: {\(requirement)}\n") + RGW.appPolicy(cluster: "db"))
            .write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let (_, out) = try run(drctlBinary, ["status", "--policies", dir] + (table ? [] : ["-o", "json"]), env: rgw.environment)
        return out
    }

    func lockReasons(_ w: [String: Any]) -> [String] { (w["reasons"] as? [String] ?? []).filter { $0.hasPrefix("Object Lock:") } }

    @Test func statusReportsAndRequiresObjectLock() throws {
        let s3 = try rgw.client()
        let specs = PruneDifferentialTests.histories[0].specs
        let locked = "lockstatus-\(UInt32.random(in: 0...UInt32.max))"
        try s3.createBucket(locked, objectLock: BucketObjectLock(enabled: true, mode: "GOVERNANCE", days: 1))
        try PruneDifferentialTests.write(specs, s3: s3, bucket: locked, server: "db", now: Date())
        let plain = try rgw.bucket(s3, "lockstatus-plain")
        try PruneDifferentialTests.write(specs, s3: s3, bucket: plain, server: "db", now: Date())

        // Met: the bucket's default locks every new object, the newest WAL segment included.
        let met = try status(bucket: locked, requirement: "mode: GOVERNANCE, retention: 1d")
        let description = met["objectLock"] as? String ?? ""
        #expect(description.hasPrefix("enabled, default retention GOVERNANCE 1d; newest WAL 000000010000000000000040.gz locked (GOVERNANCE) until"), "\(description)")
        #expect(lockReasons(met).isEmpty, "\(lockReasons(met))")

        // Weaker than required: named, and the workload is at risk.
        let weak = try status(bucket: locked, requirement: "mode: COMPLIANCE, retention: 7d")
        #expect(weak["status"] as? String != "PROTECTED")
        let why = lockReasons(weak).joined()
        #expect(why.contains("mode is GOVERNANCE") && why.contains("requires COMPLIANCE") && why.contains("default retention is 1d, shorter than the 7d"), "\(why)")

        // No Object Lock at all: reported whether or not a policy requires it.
        let none = try status(bucket: plain, requirement: "")
        #expect(none["objectLock"] as? String == "not enabled" && lockReasons(none).isEmpty)
        let required = try status(bucket: plain, requirement: "mode: COMPLIANCE, retention: 30d")
        print(try status(bucket: locked, requirement: "mode: COMPLIANCE, retention: 7d", table: true))
        #expect(lockReasons(required).joined().contains("does not have Object Lock enabled"), "\(required)")
    }
}

/// Incremental catalog sync: sealed WAL directories are not listed again; --full lists all.
@Suite struct IncrementalSyncTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    @Test func sealedDirectoriesComeFromTheCatalog() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "incremental")
        let layout = BarmanLayout(root: "cnpg")
        func key(_ n: UInt32) -> String {
            layout.key(for: .walSegment(server: "db", segment: WALSegment(timeline: 1, log: n / 256, segment: n % 256), compression: .gzip))
        }
        // Two WAL directories: log 0 (sealed, 256 segments) and log 1 (filling).
        let keys = (UInt32(1)..<UInt32(300)).map(key)
        let errors = ErrorBox()
        DispatchQueue.concurrentPerform(iterations: 8) { w in
            for i in stride(from: w, to: keys.count, by: 8) {
                do { try s3.putObject(S3URL(bucket: bucket, key: keys[i]), bytes: [1]) } catch { errors.add(error) }
            }
        }
        #expect(errors.all.isEmpty)
        let env = rgw.environment
        let catalog = tempPath("incremental.sqlite")
        defer { for suffix in ["", "-wal", "-shm", ".lock"] { unlink(catalog + suffix) } }
        func sync(_ extra: [String] = []) throws -> [String: Any] {
            let (st, out) = try run(drctlBinary, ["catalog", "sync", "--source", "s3://\(bucket)/cnpg", "--catalog", catalog, "-o", "json"] + extra, env: env)
            try #require(st == 0, "\(out)")
            return try #require((try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]])?.first)
        }
        var r = try sync()
        #expect(r["full"] as? Bool == true && r["objects"] as? Int == 299)
        // New WAL lands in the open directory: an incremental sync lists only that one.
        try s3.putObject(S3URL(bucket: bucket, key: key(300)), bytes: [1])
        r = try sync()
        #expect(r["full"] as? Bool == false && r["objects"] as? Int == 300)
        #expect((r["listed"] as? Int).map { $0 < 60 } == true, "only the open directory was listed: \(r)")
        // A deletion inside the sealed directory is for the full listing to find.
        try s3.deleteObject(S3URL(bucket: bucket, key: key(10)))
        #expect(try sync()["objects"] as? Int == 300)
        r = try sync(["--full"])
        #expect(r["full"] as? Bool == true && r["objects"] as? Int == 299)
    }
}

import Foundation
import Testing
import ObjectStore
import TestSupport

/// Velero-format backups (written as Velero's object_store_layout.go lays them out) in the
/// real RGW, classified by `drctl backups --velero`.
@Suite struct VeleroBucketTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    /// When the tests' Velero backups started: three hours before this run (whole minutes), so
    /// that a daily schedule's RPO holds whatever the date; never a fixed date.
    static let recentStart = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 60).rounded(.down) * 60 - 3 * 3600)

    /// RFC 3339 in UTC, as Velero writes its timestamps.
    static func rfc3339(_ d: Date) -> String { ISO8601DateFormatter().string(from: d) }

    /// The name Velero gives a scheduled backup: `<schedule>-<yyyyMMddHHmmss>` of its start, in UTC.
    static func scheduledName(_ schedule: String = "n8n-prod-daily", at start: Date = recentStart) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMddHHmmss"
        return "\(schedule)-\(f.string(from: start))"
    }

    /// velero-backup.json of a backup that started at `start` and (if terminal) completed 72 s
    /// later; it expires after its TTL (7 days) unless `expiration` says otherwise.
    static func backupJSON(_ name: String, phase: String, namespaces: [String] = ["n8n-prod"], errors: Int = 0,
                           expiration: String? = nil, start: Date = recentStart) -> [UInt8] {
        let completed = rfc3339(start.addingTimeInterval(72))
        let completion = ["Completed", "PartiallyFailed", "Failed"].contains(phase) ? #","completionTimestamp":"\#(completed)""# : ""
        let expires = expiration ?? rfc3339(start.addingTimeInterval(7 * 86400))
        return Array("""
            {"kind":"Backup","apiVersion":"velero.io/v1","metadata":{"name":"\(name)","namespace":"velero",
             "labels":{"velero.io/schedule-name":"n8n-prod-daily","velero.io/storage-location":"ceph-rgw"}},
             "spec":{"includedNamespaces":\(namespaces.map { "\"\($0)\"" }),"ttl":"168h0m0s","storageLocation":"ceph-rgw"},
             "status":{"version":1,"formatVersion":"1.1.0","phase":"\(phase)","expiration":"\(expires)",
              "startTimestamp":"\(rfc3339(start))"\(completion),"errors":\(errors),"warnings":1,
              "progress":{"totalItems":3,"itemsBackedUp":3}}}
            """.utf8)
    }

    /// A contents tarball as Velero writes it: resources/<group-resource>/namespaces/<ns>/<name>.json and metadata/version.
    /// A Velero backup tarball of n8n-prod's Deployment n8n, plus `extra` (path under
    /// resources/ -> the object's JSON).
    /// A Velero tarball: the Deployment n8n-prod/n8n (unless not `base`) and `extra` (paths under resources/).
    static func tarball(extra: [String: String] = [:], base: Bool = true) throws -> [UInt8] {
        let dir = tempPath("velero-tar")
        try FileManager.default.createDirectory(atPath: "\(dir)/metadata", withIntermediateDirectories: true)
        let objects = base ? ["deployments.apps/namespaces/n8n-prod/n8n.json": #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"n8n","namespace":"n8n-prod"}}"#] : [:]
        for (path, json) in objects.merging(extra, uniquingKeysWith: { $1 }) {
            let file = "\(dir)/resources/\(path)"
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try json.write(toFile: file, atomically: true, encoding: .utf8)
        }
        try "1".write(toFile: "\(dir)/metadata/version", atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (st, out) = try run("/bin/tar", ["-czf", "\(dir).tar.gz", "-C", dir, "resources", "metadata"])
        #expect(st == 0, "\(out)")
        defer { unlink("\(dir).tar.gz") }
        return try Array(Data(contentsOf: URL(fileURLWithPath: "\(dir).tar.gz")))
    }

    /// A storage location Velero encrypts with age (spec.encryption.type: age: every object a
    /// whole age file, by filippo.io/age, which is what Debian's age is): read with its identity
    /// like a plain one; without it each backup is named as encrypted, and no key is printed.
    @Test func anAgeEncryptedStorageLocationIsReadWithItsIdentity() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/age-keygen"), "Debian's age is missing: run scripts/install-deps.sh")
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "velero-age")
        let dir = tempPath("velero-age")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = dir + "/key.txt"
        try #require(try run("/usr/bin/age-keygen", ["-o", key]).0 == 0)
        let recipient = try run("/usr/bin/age-keygen", ["-y", key]).1.trimmingCharacters(in: .whitespacesAndNewlines)
        func sealed(_ bytes: [UInt8]) throws -> [UInt8] {
            try Data(bytes).write(to: URL(fileURLWithPath: dir + "/plain"))
            let (st, out) = try run("/usr/bin/age", ["-r", recipient, "-o", dir + "/sealed", dir + "/plain"])
            try #require(st == 0, "\(out)")
            return try Array(Data(contentsOf: URL(fileURLWithPath: dir + "/sealed")))
        }
        let name = "n8n-prod-daily-sealed"
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(name)/\(name).tar.gz"), bytes: try sealed(try Self.tarball()))
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(name)/velero-backup.json"), bytes: try sealed(Self.backupJSON(name, phase: "Completed")))

        let (st, out) = try run(drctlBinary, ["backups", "--velero", "s3://\(bucket)/velero", "--identity", key, "-o", "json"], env: rgw.environment)
        #expect(st == 0 && out.contains("\"phase\" : \"Completed\"") && out.contains("\"restorePoint\" : true"), "\(out)")
        let (bst, blind) = try run(drctlBinary, ["backups", "--velero", "s3://\(bucket)/velero"], env: rgw.environment)
        #expect(bst == 0 && blind.contains("Unreadable") && blind.contains("is encrypted with age") && blind.contains("--identity"), "\(blind)")
        #expect(!out.contains("AGE-SECRET-KEY-") && !blind.contains("AGE-SECRET-KEY-"))
    }

    @Test func phasesAreClassified() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "velero")
        let tar = try Self.tarball()
        func put(_ name: String, phase: String, contents: Bool = true) throws {
            if contents {
                try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(name)/\(name).tar.gz"), bytes: tar)
                try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(name)/\(name)-resource-list.json.gz"), bytes: [])
            }
            try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(name)/velero-backup.json"), bytes: Self.backupJSON(name, phase: phase))
        }
        try put("daily-completed", phase: "Completed")
        try put("daily-partial", phase: "PartiallyFailed")
        try put("daily-failed", phase: "Failed", contents: false)
        try put("daily-running", phase: "WaitingForPluginOperations")
        try put("daily-lost-tarball", phase: "Completed", contents: false)

        let env = rgw.environment
        func scan(_ extra: [String] = []) throws -> [String: [String: Any]] {
            let (st, out) = try run(drctlBinary, ["backups", "--velero", "s3://\(bucket)/velero", "-o", "json"] + extra, env: env)
            try #require(st == 0, "\(out)")
            let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
            return Dictionary(uniqueKeysWithValues: (json["velero"] as! [[String: Any]]).map { ($0["name"] as! String, $0) })
        }
        var r = try scan()
        #expect(r.count == 5)
        #expect(r["daily-completed"]?["restorePoint"] as? Bool == true && r["daily-completed"]?["terminal"] as? Bool == true)
        #expect(r["daily-partial"]?["restorePoint"] as? Bool == false && r["daily-partial"]?["terminal"] as? Bool == true)
        #expect(r["daily-failed"]?["restorePoint"] as? Bool == false && r["daily-failed"]?["phase"] as? String == "Failed")
        #expect(r["daily-running"]?["restorePoint"] as? Bool == false && r["daily-running"]?["terminal"] as? Bool == false)
        #expect(r["daily-lost-tarball"]?["restorePoint"] as? Bool == false)
        #expect((r["daily-lost-tarball"]?["problem"] as? String)?.contains("daily-lost-tarball.tar.gz is missing") == true)
        #expect(r["daily-completed"]?["schedule"] as? String == "n8n-prod-daily")
        #expect((r["daily-completed"]?["contentsSize"] as? Int) == tar.count)

        // Policy allows PartiallyFailed: it counts.
        #expect(try scan(["--allow-partially-failed"])["daily-partial"]?["restorePoint"] as? Bool == true)

        // Through the catalog: the first sync sees the backup still running.
        let catalog = tempPath("velero-catalog.sqlite")
        defer { for suffix in ["", "-wal", "-shm", ".lock"] { unlink(catalog + suffix) } }
        let sync = ["catalog", "sync", "--velero", "s3://\(bucket)/velero", "--catalog", catalog]
        #expect(try run(drctlBinary, sync, env: env).0 == 0)
        #expect(try scan(["--catalog", catalog])["daily-running"]?["terminal"] as? Bool == false)

        // Velero rewrites velero-backup.json when the backup finishes: the next read sees it,
        // and so does the next sync (its ETag changed).
        try put("daily-running", phase: "Completed")
        r = try scan()
        #expect(r["daily-running"]?["restorePoint"] as? Bool == true && r["daily-running"]?["terminal"] as? Bool == true)
        let (_, out) = try run(drctlBinary, sync + ["-o", "json"], env: env)
        #expect((try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]])?.first?["fetched"] as? Int == 1, "\(out)")
        #expect(try scan(["--catalog", catalog])["daily-running"]?["restorePoint"] as? Bool == true)

        // One sync at a time: while another holds the catalog, --no-wait exits cleanly, and a
        // waiting sync proceeds once it is released.
        let fd = open(catalog + ".lock", O_RDWR | O_CREAT, 0o644)
        #expect(flock(fd, LOCK_EX) == 0)
        let (busy, busyOut) = try run(drctlBinary, sync + ["--no-wait"], env: env)
        #expect(busy == 0 && busyOut.contains("another catalog sync is running"), "\(busyOut)")
        let waiting = try spawn(drctlBinary, sync, env: env)
        usleep(300_000)
        var status: Int32 = 0
        #expect(waitpid(waiting, &status, WNOHANG) == 0, "the second sync waits")
        flock(fd, LOCK_UN)
        close(fd)
        #expect(try reap(waiting) == 0, "and completes once the lock is released")

        // prune --velero reports what has expired and deletes nothing, even with --apply.
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/daily-old/velero-backup.json"),
                         bytes: Self.backupJSON("daily-old", phase: "Completed", expiration: Self.rfc3339(Self.recentStart.addingTimeInterval(-30 * 86400))))
        var before: [String] = []
        try s3.listObjects(bucket: bucket, prefix: "velero/") { before += $0.objects.map(\.key) }
        let (pst, pout) = try run(drctlBinary, ["prune", "--velero", "s3://\(bucket)/velero", "--apply", "-o", "json"], env: env)
        #expect(pst == 0, "\(pout)")
        let expiry = try #require(try JSONSerialization.jsonObject(with: Data(pout.utf8)) as? [[String: Any]])
        #expect(expiry.filter { $0["expired"] as? Bool == true }.map { $0["name"] as! String } == ["daily-old"])
        var after: [String] = []
        try s3.listObjects(bucket: bucket, prefix: "velero/") { after += $0.objects.map(\.key) }
        #expect(after == before)
    }
}

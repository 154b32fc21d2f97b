import Foundation
import ObjectStore
import Support
import Testing
import TestSupport

/// Long-term tiers on a real archive: four base backups by real barman-cloud of a real
/// PostgreSQL 15 in RGW, three of them moved back in time (as if taken 10, 40 and 80 days ago),
/// pruned with a 7-day window and 3 weekly backups. The weekly backup stays, with only its own
/// WAL, and restores to its consistent point; the window still restores to any time; barman
/// itself still reads the archive.
@Suite(.serialized) struct TieredPruneTests {
    static func stamp(_ d: Date, _ format: String) -> String { PruneDifferentialTests.stamp(d, format) }

    static func parse(_ s: String, _ format: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = format
        return f.date(from: s)
    }

    /// Moves backup `id` `days` into the past: its objects under the id barman would have given
    /// it then (its begin time, on this UTC host) and its backup.info's begin_time and end_time
    /// shifted as much. Its tars and WAL stay as barman wrote them.
    static func rehome(_ db: ArchivedDatabase, _ id: String, days: Double) throws -> String {
        let shift = -days * 86400
        let newID = stamp(parse(id, "yyyyMMdd'T'HHmmss")!.addingTimeInterval(shift), "yyyyMMdd'T'HHmmss")
        let prefix = "cnpg/app-db/base/\(id)/"
        var keys: [String] = []
        try db.s3.listObjects(bucket: db.bucket, prefix: prefix) { keys += $0.objects.map(\.key) }
        for key in keys {
            var bytes: [UInt8] = []
            try db.s3.getObject(S3URL(bucket: db.bucket, key: key)) { bytes += $0 }
            if key.hasSuffix("/backup.info") {
                let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
                    for field in ["begin_time=", "end_time="] where line.hasPrefix(field) {
                        let value = line.dropFirst(field.count)
                        guard let t = parse(String(value.prefix(19)), "yyyy-MM-dd HH:mm:ss") else { continue }
                        return field + stamp(t.addingTimeInterval(shift), "yyyy-MM-dd HH:mm:ss") + value.dropFirst(19)
                    }
                    return String(line)
                }
                bytes = Array(lines.joined(separator: "\n").utf8)
            }
            try db.s3.putObject(S3URL(bucket: db.bucket, key: "cnpg/app-db/base/\(newID)/" + key.dropFirst(prefix.count)), bytes: bytes)
        }
        _ = try db.s3.deleteObjects(bucket: db.bucket, keys: keys)
        return newID
    }

    struct Backup: Decodable {
        var backupID: String
        var beginWAL: String?
        var endWAL: String?
        var endTime: Date?
        var restorable: Bool
    }

    struct Listing: Decodable {
        struct Server: Decodable { var backups: [Backup] }
        var barman: [Server]
    }

    @Test func aWeeklyTierKeepsItsBackupAndOnlyItsWALAndRestoresToItsPoint() throws {
        let rgw = try RGW.get()
        let db = try ArchivedDatabase(rgw: rgw, bucket: "tiers")
        let source = "s3://\(db.bucket)/cnpg"
        var env = rgw.environment   // --source URLs: the endpoint from the environment
        env["DRCTL_DATA_DIR"] = db.work + "/data"
        // Rows 1-40 are in the first backup; each later one holds ten more.
        for rows in [50, 60, 70] {
            _ = try db.psql("insert into t(id) select generate_series(\(rows - 9), \(rows)) on conflict do nothing")
            usleep(1_100_000)   // barman names backups by the second
            try db.baseBackup()
        }
        _ = try db.psql("insert into t(id) select generate_series(71, 75)")
        try rgw.waitArchived(db.psql("select pg_walfile_name(pg_switch_wal())"), s3: db.s3, bucket: db.bucket)

        func listing() throws -> [Backup] {
            let (st, out) = try run(drctlBinary, ["backups", "--source", source, "--server", "app-db", "-o", "json"], env: env)
            try #require(st == 0, "\(out)")
            let d = JSONCoding.decoder()
            return try d.decode(Listing.self, from: Data(out.utf8)).barman.first?.backups.sorted { $0.backupID < $1.backupID } ?? []
        }
        let taken = try listing()
        try #require(taken.count == 4, "\(taken.map(\.backupID))")
        // As if taken 80, 40 and 10 days ago (each in its own ISO week), the newest today.
        let b1 = try Self.rehome(db, taken[0].backupID, days: 80)
        let b2 = try Self.rehome(db, taken[1].backupID, days: 40)
        let b3 = try Self.rehome(db, taken[2].backupID, days: 10)
        let b4 = taken[3].backupID
        let before = try listing()
        #expect(before.map(\.backupID) == [b1, b2, b3, b4] && before.allSatisfy(\.restorable), "\(before.map { "\($0.backupID) \($0.restorable)" })")
        // barman itself reads the re-homed archive.
        let list = try run("/opt/drctl-barman/bin/barman-cloud-backup-list", ["--endpoint-url", rgw.endpoint, source, "app-db"], env: rgw.environment)
        #expect(list.0 == 0 && [b1, b2, b3, b4].allSatisfy(list.1.contains), "\(list.1)")

        // The plan: the window keeps b4 and b3 (the first before its start), the weekly tier b2, b1 goes.
        let (pst, plan) = try run(drctlBinary, ["prune", "--source", source, "--server", "app-db", "--retention", "7d", "--keep-weekly", "3", "--trust-unproven"], env: env)
        try #require(pst == 0, "\(plan)")
        print("$ drctl prune --source \(source) --server app-db --retention 7d --keep-weekly 3 --trust-unproven\n" + plan)
        #expect(plan.contains("RECOVERY WINDOW OF 7 DAYS + weekly 3"), "\(plan)")
        for (id, status) in [(b1, "OBSOLETE"), (b2, "KEPT_WEEKLY"), (b3, "VALID"), (b4, "VALID")] {
            let row = plan.split(separator: "\n").first { $0.hasPrefix(id) }.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            #expect(row.hasSuffix(" " + status), "\(id) \(status): \(plan)")
        }
        var walBefore: [String] = []
        try db.s3.listObjects(bucket: db.bucket, prefix: "cnpg/app-db/wals/") { walBefore += $0.objects.map(\.key) }
        let (ast, applied) = try run(drctlBinary, ["prune", "--source", source, "--server", "app-db", "--retention", "7d", "--keep-weekly", "3", "--apply", "--trust-unproven"], env: env)
        try #require(ast == 0, "\(applied)")
        print(applied.split(separator: "\n").filter { !$0.hasPrefix("  ") }.joined(separator: "\n"))

        // What stays: b2 with exactly its begin_wal...end_wal, everything from b3's begin_wal on.
        let after = try listing()
        #expect(after.map(\.backupID) == [b2, b3, b4] && after.allSatisfy(\.restorable), "\(after.map { "\($0.backupID) \($0.restorable)" })")
        let k2 = try #require(before.first { $0.backupID == b2 }), k3 = try #require(before.first { $0.backupID == b3 })
        let (begin2, end2, begin3) = (try #require(k2.beginWAL), try #require(k2.endWAL), try #require(k3.beginWAL))
        var walAfter: [String] = []
        try db.s3.listObjects(bucket: db.bucket, prefix: "cnpg/app-db/wals/") { walAfter += $0.objects.map(\.key) }
        for key in walBefore {
            let name = String((key as NSString).lastPathComponent.prefix(24))
            let needed = (name >= begin2 && name <= end2) || name >= begin3
            #expect(walAfter.contains(key) == needed, "\(key): \(needed ? "needed, but deleted" : "needed by no kept backup, but kept")")
        }
        #expect(walBefore.contains { k in let n = String((k as NSString).lastPathComponent.prefix(24)); return n > end2 && n < begin3 },
                "there was WAL between the weekly backup and the window to delete")
        let list2 = try run("/opt/drctl-barman/bin/barman-cloud-backup-list", ["--endpoint-url", rgw.endpoint, source, "app-db"], env: rgw.environment)
        #expect(list2.0 == 0 && !list2.1.contains(b1) && [b2, b3, b4].allSatisfy(list2.1.contains), "barman reads the pruned archive: \(list2.1)")

        // The weekly backup restores to its consistent point: the rows it held, no more.
        let point = try db.restoredRows(["--source", source, "--server", "app-db"], at: b2, env: env, into: "point")
        try #require(point.status == 0, "\(point.output)")
        #expect(point.rows == "50|50", "backup \(b2) holds rows up to 50: \(point.rows)")
        // A time before it is no point anyone can reach: refused, naming the restore points.
        // (Between it and the window cannot be shown here: its WAL objects were written today.)
        let between = RFC3339.format(k2.endTime!.addingTimeInterval(-86400))
        let (bst, bout) = try run(drctlBinary, ["restore", "--source", source, "--server", "app-db", "--at", between, "--to", db.work + "/never", "--dry-run"], env: env)
        #expect(bst != 0 && bout.contains("restore points only (--at BACKUP_ID): \(b2)"), "\(bst): \(bout)")
        print("$ drctl restore --at \(between) …\n" + bout + "\n$ drctl restore --at \(b2) …\n" + point.output)
        // The window is a point-in-time range as before: latest has every row.
        let latest = try db.restoredRows(["--source", source, "--server", "app-db"], at: "latest", env: env, into: "latest")
        try #require(latest.status == 0, "\(latest.output)")
        #expect(latest.rows == "75|75", "\(latest.rows)")

        // Status of a policy with these tiers: the weekly backup is a point, apart from the range.
        let policies = db.work + "/policies"
        try FileManager.default.createDirectory(atPath: policies, withIntermediateDirectories: true)
        try (rgw.objectStorePolicy(bucket: db.bucket) + RGW.appPolicy(cluster: "app-db").replacingOccurrences(of: "retention: 7d", with: "retention: {window: 7d, weekly: 3}"))
            .write(toFile: policies + "/p.yaml", atomically: true, encoding: .utf8)
        let (_, status) = try run(drctlBinary, ["status", "--policies", policies], env: env)
        print("$ drctl status\n" + status)
        #expect(status.contains("Restore points before the point-in-time range") && status.contains("app app-db: any time from")
                && status.contains("7d + weekly 3") && !status.contains("past the retention"), "\(status)")
        let (rst, rendered) = try run(drctlBinary, ["render", policies, "--out", db.work + "/rendered"], env: env)
        #expect(rst == 0, "\(rendered)")
        // The plugin's ObjectStore (the policy's method) carries no retentionPolicy for CNPG to apply.
        let objectStore = try String(contentsOfFile: db.work + "/rendered/cnpg/app-app-db-objectstore.yaml", encoding: .utf8)
        let patch = try String(contentsOfFile: db.work + "/rendered/cnpg/app-app-db-cluster-patch.yaml", encoding: .utf8)
        #expect(!objectStore.contains("retentionPolicy") && patch.contains("drctl prune applies the window and the tiers"), "CNPG must not prune the tiers: \(objectStore)\n\(patch)")
    }

}

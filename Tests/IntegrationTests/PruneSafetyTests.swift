import Foundation
import Testing
import Layout
import ObjectStore
import TestSupport

/// No prune can destroy the last way back, on a real RGW: retention keeps the newest restorable
/// backup whatever the window says, and a prune record in the bucket (which anyone who can
/// write there can forge, and which an interrupted mistake leaves) never widens a deletion.
@Suite struct PruneSafetyTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    typealias Spec = PruneDifferentialTests.Spec

    func listing(_ s3: S3Client, _ bucket: String, _ prefix: String = "") throws -> Set<String> {
        var keys = Set<String>()
        try s3.listObjects(bucket: bucket, prefix: prefix) { keys.formUnion($0.objects.map(\.key)) }
        return keys
    }

    func id(_ now: Date, _ daysAgo: Double) -> String { PruneDifferentialTests.stamp(now.addingTimeInterval(-daysAgo * 86400), "yyyyMMdd'T'HHmmss") }

    func prune(_ bucket: String, _ extra: [String]) throws -> (Int32, String) {
        try run(drctlBinary, ["prune", "--source", "s3://\(bucket)/cnpg", "--server", "db"] + extra, env: rgw.environment)
    }

    /// A (30 days, restorable), B (10 days, DONE, its data gone), C (2 days, DONE, a hole in its
    /// WAL); window 7 days. barman-cloud-backup-delete would delete A; drctl keeps it, says why.
    @Test func theNewestRestorableBackupIsNeverDeleted() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "lastway")
        let now = Date()
        let specs = [Spec(daysAgo: 30, status: "DONE", timeline: 1, beginSegment: 2), Spec(daysAgo: 10, status: "DONE", timeline: 1, beginSegment: 0x10),
                     Spec(daysAgo: 2, status: "DONE", timeline: 1, beginSegment: 0x20)]
        try PruneDifferentialTests.write(specs, s3: s3, bucket: bucket, server: "db", now: now)
        let layout = BarmanLayout(root: "cnpg")
        let (a, b) = (id(now, 30), id(now, 10))
        try s3.deleteObject(S3URL(bucket: bucket, key: layout.key(for: .backupArchive(server: "db", backupID: b, name: "data", compression: .gzip))))
        try s3.deleteObject(S3URL(bucket: bucket, key: layout.key(for: .walSegment(server: "db", segment: WALSegment(timeline: 1, log: 0, segment: 0x20), compression: .gzip))))

        // What barman alone would do with this bucket: A goes.
        let barman = "/opt/drctl-barman/bin/barman-cloud-backup-delete"
        if FileManager.default.isExecutableFile(atPath: barman) {
            let (st, out) = try run(barman, ["--endpoint-url", rgw.endpoint, "--dry-run", "-r", "RECOVERY WINDOW OF 7 DAYS", "s3://\(bucket)/cnpg", "db"], env: rgw.environment)
            #expect(st == 0 && out.contains(a), "barman-cloud-backup-delete would delete \(a): \(out)")
        }
        let (_, status) = try run(drctlBinary, ["backups", "--source", "s3://\(bucket)/cnpg", "--server", "db", "-o", "json"], env: rgw.environment)
        let backups = ((try JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any])?["barman"] as? [[String: Any]])?.first?["backups"] as? [[String: Any]] ?? []
        #expect(backups.map { $0["restorable"] as? Bool ?? false } == [true, false, false], "\(status)")

        let before = try listing(s3, bucket, "cnpg/")
        let (st, out) = try prune(bucket, ["--retention", "7d", "--apply"])
        #expect(st == 0, "\(out)")
        print("$ drctl prune --source s3://\(bucket)/cnpg --server db --retention 7d --apply\n" + out)
        #expect(out.contains("keeping \(a): the newest restorable backup"), "\(out)")
        #expect(out.contains("\(a)  DONE") && out.contains("KEPT_RESTORABLE"), "\(out)")
        #expect(try listing(s3, bucket, "cnpg/") == before, "nothing deleted")
        // And a restore still has somewhere to start.
        let (pst, pout) = try run(drctlBinary, ["restore", "--source", "s3://\(bucket)/cnpg", "--server", "db", "--at", "latest", "--dry-run"], env: rgw.environment)
        #expect(pst == 0 && pout.contains("base backup        \(a)"), "\(pout)")
    }

    /// Records under drctl/prune/db/ without their outcome: a forged one naming keys elsewhere in
    /// the bucket and keys retention keeps, and a real one left by an interrupted mistaken
    /// `--retention 1d --apply`. The next correct run deletes only what it selects itself.
    @Test func anUnfinishedPruneRecordNeverWidensADeletion() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "replay")
        let now = Date()
        try PruneDifferentialTests.write(PruneDifferentialTests.histories[0].specs, s3: s3, bucket: bucket, server: "db", now: now)
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/daily/velero-backup.json"), bytes: Array("{}".utf8))
        try s3.putObject(S3URL(bucket: bucket, key: "cnpg/other/base/20260101T000000/backup.info"), bytes: Array("status=DONE\n".utf8))

        // The correct plan, and the mistaken one (1d keeps only the newest backup).
        func plan(_ retention: String) throws -> [String: Any] {
            let (st, out) = try prune(bucket, ["--retention", retention, "-o", "json"])
            try #require(st == 0, "\(out)")
            return try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        }
        let correct = Set(try plan("7d")["keysToDelete"] as! [String])
        var mistaken = try plan("1d")
        let mistakenKeys = Set(mistaken["keysToDelete"] as! [String])
        #expect(mistakenKeys.count > correct.count && correct.isSubset(of: mistakenKeys))
        // Interrupted before any deletion: recorded as drctl records, without its outcome.
        mistaken["bucket"] = bucket
        mistaken["root"] = "cnpg"
        try s3.putObject(S3URL(bucket: bucket, key: "drctl/prune/db/2026-01-01T00:00:00.000Z-1.json"), bytes: Array(try JSONSerialization.data(withJSONObject: mistaken)))
        // Forged: the Velero object, another server's backup, and this server's newest backup.
        let newest = id(now, 3)
        let forgedKeys = ["velero/backups/daily/velero-backup.json", "cnpg/other/base/20260101T000000/backup.info", "cnpg/db/base/\(newest)/data.tar.gz",
                          "cnpg/db/base/\(newest)/backup.info"]
        var forged = mistaken
        forged["keysToDelete"] = forgedKeys
        forged.removeValue(forKey: "bucket")
        try s3.putObject(S3URL(bucket: bucket, key: "drctl/prune/db/2026-01-02T00:00:00.000Z-2.json"), bytes: Array(try JSONSerialization.data(withJSONObject: forged)))

        // The dry run says what the unfinished records would still delete.
        let (dst, dout) = try prune(bucket, ["--retention", "7d"])
        #expect(dst == 0, "\(dout)")
        print(dout.split(separator: "\n").filter { $0.hasPrefix("an interrupted prune") || $0.hasPrefix("keeping") }.joined(separator: "\n"))
        #expect(dout.contains("2026-01-01T00:00:00.000Z-1.json: \(correct.count) of its objects are still selected and would be deleted (--apply); \(mistakenKeys.count - correct.count) no longer are and stay"), "\(dout)")
        #expect(dout.contains("2026-01-02T00:00:00.000Z-2.json: 0 of its objects are still selected") && dout.contains("2 are not barman objects of db and are never deleted"), "\(dout)")

        let before = try listing(s3, bucket)
        let (st, out) = try prune(bucket, ["--retention", "7d", "--apply"])
        #expect(st == 0, "\(out)")
        let gone = before.subtracting(try listing(s3, bucket))
        #expect(gone == correct, "deleted beyond today's plan: \(gone.subtracting(correct).sorted())")
        for k in forgedKeys { #expect(!gone.contains(k), "\(k)") }
        // Both records are closed: the next run has nothing unfinished.
        let records = try listing(s3, bucket, "drctl/prune/db/")
        for r in ["2026-01-01T00:00:00.000Z-1", "2026-01-02T00:00:00.000Z-2"] { #expect(records.contains("drctl/prune/db/\(r).done.json"), "\(records)") }
        let (_, again) = try prune(bucket, ["--retention", "7d"])
        #expect(!again.contains("an interrupted prune"), "\(again)")

        // A record made for another bucket is refused outright, and nothing is deleted.
        var elsewhere = mistaken
        elsewhere["bucket"] = "production-elsewhere"
        try s3.putObject(S3URL(bucket: bucket, key: "drctl/prune/db/2026-01-03T00:00:00.000Z-3.json"), bytes: Array(try JSONSerialization.data(withJSONObject: elsewhere)))
        try PruneDifferentialTests.write(PruneDifferentialTests.histories[0].specs, s3: s3, bucket: bucket, server: "db", now: now)
        let full = try listing(s3, bucket)
        let (rst, rout) = try prune(bucket, ["--retention", "7d", "--apply"])
        #expect(rst != 0 && rout.contains("was made for bucket 'production-elsewhere', not '\(bucket)': refused (nothing deleted)"), "\(rout)")
        #expect(try listing(s3, bucket) == full)
    }
}

import Foundation
import Testing
import Layout
import Support
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
        let (st, out) = try prune(bucket, ["--retention", "7d", "--apply", "--trust-unproven"])
        #expect(st == 0, "\(out)")
        print("$ drctl prune --source s3://\(bucket)/cnpg --server db --retention 7d --apply --trust-unproven\n" + out)
        #expect(out.contains("keeping \(a): the newest restorable backup"), "\(out)")
        #expect(out.contains("\(a)  DONE") && out.contains("KEPT_RESTORABLE"), "\(out)")
        #expect(try listing(s3, bucket, "cnpg/") == before, "nothing deleted")
        // And a restore still has somewhere to start.
        let (pst, pout) = try run(drctlBinary, ["restore", "--source", "s3://\(bucket)/cnpg", "--server", "db", "--at", "latest", "--dry-run"], env: rgw.environment)
        #expect(pst == 0 && pout.contains("base backup        \(a)"), "\(pout)")
    }

    /// Records under drctl/prune/db/ that drctl did not seal: a "plan" naming keys elsewhere in the
    /// bucket and this server's newest backup, one made with a mistaken `--retention 1d`, one made
    /// for another bucket. Anyone with the bucket's keys can write them: each is ignored, named as
    /// unauthenticated, and the run deletes exactly what it selects itself.
    @Test func anUnsealedPruneRecordNeverSteersADeletion() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "replay")
        let now = Date()
        try PruneDifferentialTests.write(PruneDifferentialTests.histories[0].specs, s3: s3, bucket: bucket, server: "db", now: now)
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/daily/velero-backup.json"), bytes: Array("{}".utf8))

        func plan(_ retention: String) throws -> [String: Any] {
            let (st, out) = try prune(bucket, ["--retention", retention, "-o", "json", "--trust-unproven"])
            try #require(st == 0, "\(out)")
            return try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        }
        let correct = Set(try plan("7d")["keysToDelete"] as! [String])
        var mistaken = try plan("1d")
        mistaken["bucket"] = bucket
        mistaken["root"] = "cnpg"
        try s3.putObject(S3URL(bucket: bucket, key: "drctl/prune/db/2026-01-01T00:00:00.000Z-1.json"), bytes: Array(try JSONSerialization.data(withJSONObject: mistaken)))
        let newest = id(now, 3)
        var forged = mistaken
        forged["keysToDelete"] = ["velero/backups/daily/velero-backup.json", "cnpg/db/base/\(newest)/data.tar.gz", "cnpg/db/base/\(newest)/backup.info"]
        try s3.putObject(S3URL(bucket: bucket, key: "drctl/prune/db/2026-01-02T00:00:00.000Z-2.json"), bytes: Array(try JSONSerialization.data(withJSONObject: forged)))
        var elsewhere = mistaken
        elsewhere["bucket"] = "production-elsewhere"
        try s3.putObject(S3URL(bucket: bucket, key: "drctl/prune/db/2026-01-03T00:00:00.000Z-3.json"), bytes: Array(try JSONSerialization.data(withJSONObject: elsewhere)))

        let (dst, dout) = try prune(bucket, ["--retention", "7d", "--trust-unproven"])
        #expect(dst == 0 && !dout.contains("an interrupted prune") && dout.contains("ignored 3 unauthenticated drctl record(s)"), "\(dout)")
        let before = try listing(s3, bucket)
        let (st, out) = try prune(bucket, ["--retention", "7d", "--apply", "--trust-unproven"])
        #expect(st == 0, "\(out)")
        let gone = before.subtracting(try listing(s3, bucket))
        #expect(gone == correct, "deleted beyond today's plan: \(gone.subtracting(correct).sorted())")
        for k in forged["keysToDelete"] as! [String] { #expect(!gone.contains(k), "\(k)") }
    }

    /// The attack of issue 28 with real barman-cloud backups of a real PostgreSQL: A (30 days,
    /// restored by a drill), B and C (newer, DONE, their data gone), and F written beside A by
    /// someone with the bucket's keys (A's backup.info under a new id, junk data). On backup.info
    /// alone F is "the newest restorable" and A goes with its WAL; on proof A stays, whole.
    @Test func aForgedBackupNextToTheProvenOneCannotGetItDeleted() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "forged")
        let source = "s3://\(db.bucket)/cnpg"
        var env = rgw.environment   // --source URLs: the endpoint from the environment
        env["DRCTL_DATA_DIR"] = db.work + "/data"
        func backups() throws -> [TieredPruneTests.Backup] {
            let (st, out) = try run(drctlBinary, ["backups", "--source", source, "--server", "app-db", "-o", "json"], env: env)
            try #require(st == 0, "\(out)")
            return try JSONCoding.decoder().decode(TieredPruneTests.Listing.self, from: Data(out.utf8)).barman.first?.backups.sorted { $0.backupID < $1.backupID } ?? []
        }
        let a = try TieredPruneTests.rehome(db, try #require(try backups().first).backupID, days: 30)
        // The drill restores A (the only backup) and seals what it read.
        let policies = db.work + "/policies"
        try FileManager.default.createDirectory(atPath: policies, withIntermediateDirectories: true)
        try (rgw.objectStorePolicy(bucket: db.bucket) + RGW.appPolicy(cluster: "app-db", rpo: "48h")).write(toFile: policies + "/p.yaml", atomically: true, encoding: .utf8)
        let (vst, drill) = try run(drctlBinary, ["verify", "app", "--policies", policies, "--scratch-dir", db.work + "/scratch", "-o", "json"], env: db.drctlEnvironment)
        try #require(vst == 0 && drill.contains("\"result\" : \"passed\"") && drill.contains("\"proof\""), "\(drill)")

        let target = try db.targetBetweenTwoCommits()
        let expected = try db.psql("select count(*) filter (where id <> 44), max(id) filter (where id <> 44) from t")
        for _ in 0..<2 { usleep(1_100_000); try db.baseBackup() }
        let all = try backups()
        let (b, c) = (all[1].backupID, all[2].backupID)
        for id in [b, c] {
            var keys: [String] = []
            try db.s3.listObjects(bucket: db.bucket, prefix: "cnpg/app-db/base/\(id)/data") { keys += $0.objects.map(\.key) }
            _ = try db.s3.deleteObjects(bucket: db.bucket, keys: keys)
        }
        // F: A's backup.info under the next second's id, and junk where its data goes.
        let f = TieredPruneTests.stamp(TieredPruneTests.parse(a, "yyyyMMdd'T'HHmmss")!.addingTimeInterval(1), "yyyyMMdd'T'HHmmss")
        var info: [UInt8] = []
        try db.s3.getObject(S3URL(bucket: db.bucket, key: "cnpg/app-db/base/\(a)/backup.info")) { info += $0 }
        // Its times a second later too: the newest backup before any target after A.
        let shifted = String(decoding: info, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            for field in ["begin_time=", "end_time="] where line.hasPrefix(field) {
                let value = line.dropFirst(field.count)
                guard let t = TieredPruneTests.parse(String(value.prefix(19)), "yyyy-MM-dd HH:mm:ss") else { continue }
                return field + TieredPruneTests.stamp(t.addingTimeInterval(1), "yyyy-MM-dd HH:mm:ss") + value.dropFirst(19)
            }
            return String(line)
        }.joined(separator: "\n")
        try db.s3.putObject(S3URL(bucket: db.bucket, key: "cnpg/app-db/base/\(f)/backup.info"), bytes: Array(shifted.utf8))
        try db.s3.putObject(S3URL(bucket: db.bucket, key: "cnpg/app-db/base/\(f)/data.tar.gz"), bytes: Array(repeating: 0x1f, count: 4096))

        // And evidence claiming a drill proved F: the real evidence edited, its seal dropped.
        var evidenceKeys: [String] = []
        try db.s3.listObjects(bucket: db.bucket, prefix: "drctl/evidence/app/") { evidenceKeys += $0.objects.map(\.key) }
        let realEvidence = try #require(evidenceKeys.first)
        var evidence: [UInt8] = []
        try db.s3.getObject(S3URL(bucket: db.bucket, key: realEvidence)) { evidence += $0 }
        var forgedEvidence = try #require(try JSONSerialization.jsonObject(with: Data(evidence)) as? [String: Any])
        forgedEvidence.removeValue(forKey: "drctlSeal")
        let forgedText = String(decoding: try JSONSerialization.data(withJSONObject: forgedEvidence), as: UTF8.self).replacingOccurrences(of: a, with: f)
        try db.s3.putObject(S3URL(bucket: db.bucket, key: "drctl/evidence/app/29991231T000000Z-forged.json"), bytes: Array(forgedText.utf8))

        // On backup.info alone (what --trust-unproven does, and drctl did before): A would go.
        let (tst, trusting) = try run(drctlBinary, ["prune", "--source", source, "--server", "app-db", "--retention", "7d", "--trust-unproven", "-o", "json"], env: env)
        let trusted = try #require(try JSONSerialization.jsonObject(with: Data(trusting.utf8)) as? [String: Any], "\(tst): \(trusting)")
        #expect((trusted["backupsToDelete"] as? [String]) == [a], "\(trusting)")

        var before: [String] = []
        try db.s3.listObjects(bucket: db.bucket, prefix: "cnpg/") { before += $0.objects.map(\.key) }
        let (st, out) = try run(drctlBinary, ["prune", "--source", source, "--server", "app-db", "--retention", "7d", "--apply"], env: env)
        print("$ drctl prune --source \(source) --server app-db --retention 7d --apply\n" + out)
        #expect(st == 0 && out.contains("proven by a drill (restored, still the same objects): \(a)\n"), "\(out)")
        #expect(out.contains("ignored 1 unauthenticated drctl record(s)") && out.contains("29991231T000000Z-forged.json"), "\(out)")
        let (_, status) = try run(drctlBinary, ["status", "app", "--policies", policies, "-o", "json"], env: db.drctlEnvironment)
        let workloads = try JSONSerialization.jsonObject(with: Data(status.utf8)) as? [[String: Any]] ?? []
        let lastDrill = workloads.first?["lastDrill"] as? [String: Any]
        #expect(lastDrill != nil && lastDrill?["id"] as? String != "29991231T000000Z-forged", "the forged drill is not the last drill: \(status)")
        #expect((workloads.first?["unauthenticatedEvidence"] as? [String]) == ["drctl/evidence/app/29991231T000000Z-forged.json"], "and it is named: \(status)")
        let row = out.split(separator: "\n").first { $0.hasPrefix(a) }.map(String.init) ?? ""
        #expect(row.hasSuffix("VALID"), "A, proven, holds the window's start: \(out)")
        var after: [String] = []
        try db.s3.listObjects(bucket: db.bucket, prefix: "cnpg/") { after += $0.objects.map(\.key) }
        #expect(Set(after) == Set(before), "deleted: \(Set(before).subtracting(after).sorted())")

        // A restores to the target exactly: the plan picks F (the newest before the target by its
        // backup.info), whose data does not unpack, and the restore starts again from A.
        let restored = try db.restoredRows(["--source", source, "--server", "app-db"], at: target, env: env)
        #expect(restored.status == 0 && restored.rows == expected, "\(restored.rows) vs \(expected): \(restored.output)")
        #expect(restored.output.contains("base backup \(f) cannot be restored") && restored.output.contains("restoring from the backup before it, \(a), instead"),
                "\(restored.output)")
        #expect(restored.output.contains("Recovered app-db from \(a)"), "restored from A: \(restored.output)")
    }
}

/// A shell that works on several clusters: AWS_ENDPOINT_URL and the keys of another RGW
/// exported. A command that names a workload uses the policy's store (endpoint, region, the
/// Secret drctl mounts), says once that the environment disagrees, and never touches the other.
@Suite(.serialized) struct AmbientEnvironmentTests {
    @Test func pruneAndCopyOfAWorkloadTouchOnlyThePolicysStore() throws {
        let rgw = try RGW.get()
        let other = try RGW.startPrivate()
        defer { other.stop() }
        let s3 = try rgw.client(), otherS3 = try other.client()
        let bucket = try rgw.bucket(s3, "ambient")
        try otherS3.createBucket(bucket)
        let copyBucket = try rgw.bucket(s3, "ambient-copy")
        let now = Date()
        for (client, b) in [(s3, bucket), (otherS3, bucket)] {
            try PruneDifferentialTests.write(PruneDifferentialTests.histories[0].specs, s3: client, bucket: b, server: "db", now: now)
        }
        try otherS3.putObject(S3URL(bucket: bucket, key: "velero/backups/only-elsewhere/velero-backup.json"), bytes: Array("{}".utf8))
        let dir = tempPath("ambient")
        for secret in ["s3", "copy-keys"] { try rgw.writeKeys(to: "\(dir)/secrets/\(secret)") }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try (rgw.objectStorePolicy(bucket: bucket, extra: "  copies: [{to: offsite}]\n") + rgw.offsitePolicy(bucket: copyBucket, secretName: "copy-keys")
             + "---\n\n" + RGW.appPolicy(cluster: "db")).write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        var env = other.environment   // the other RGW's endpoint and keys, as a shell may hold them
        env["DRCTL_SECRETS_DIR"] = dir + "/secrets"
        func listing(_ c: S3Client, _ b: String) throws -> Set<String> {
            var keys = Set<String>()
            try c.listObjects(bucket: b, prefix: "") { keys.formUnion($0.objects.map(\.key)) }
            return keys
        }
        let otherBefore = try listing(otherS3, bucket), before = try listing(s3, bucket)

        let (pst, pruned) = try run(drctlBinary, ["prune", "app", "--policies", dir, "--apply", "--trust-unproven"], env: env)
        #expect(pst == 0 && pruned.contains("the environment names endpoint \(other.endpoint)") && pruned.contains("using the policy's"), "\(pruned)")
        #expect(pruned.components(separatedBy: "the environment names endpoint").count == 2, "said once: \(pruned)")
        #expect(try listing(s3, bucket).count < before.count, "the policy's store was pruned: \(pruned)")
        #expect(try listing(otherS3, bucket) == otherBefore, "the other RGW's bucket is untouched")

        let (cst, copied) = try run(drctlBinary, ["copy", "--policies", dir], env: env)
        #expect(cst == 0, "\(copied)")
        let onCopy = try listing(s3, copyBucket)
        #expect(!onCopy.contains("velero/backups/only-elsewhere/velero-backup.json") && onCopy.contains { $0.hasPrefix("cnpg/db/") }, "copied from the policy's store only: \(onCopy.sorted().prefix(5))")
        #expect(try listing(otherS3, bucket) == otherBefore)
    }
}

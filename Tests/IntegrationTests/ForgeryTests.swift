import Catalog
import Foundation
import Hashing
import Layout
import ObjectStore
import Records
import Storage
import Support
import Testing
import TestSupport

/// What someone who holds a bucket's keys (but not drctl's record key) writes into a real RGW,
/// and what the built drctl makes of it: a forged backup taking a day's tier slot, a forged
/// outcome hiding an interrupted prune, a copy record stripped of its seal with empty ETags and
/// same-size junk under it, a bit flipped in a copy on a disk.
@Suite struct ForgeryTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }
    typealias P = PruneDifferentialTests
    static let layout = BarmanLayout(root: "cnpg")

    /// The run's record key, as drctl reads it: what a drill of the test would have sealed with.
    static func ring() throws -> RecordKeyring {
        try RecordKeyring.parse(try String(contentsOfFile: testRecordKeyFile, encoding: .utf8), origin: testRecordKeyFile)
    }

    /// The most recent noon (UTC) before now: synthetic backups at noon each day stay inside their
    /// UTC day when a forgery is written half an hour after one of them, whatever the time of the run.
    static func lastNoon() -> Date {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "UTC")!
        let noon = c.date(bySettingHour: 12, minute: 0, second: 0, of: Date())!
        return noon <= Date() ? noon : noon.addingTimeInterval(-86400)
    }

    /// Sealed evidence of a passing drill that restored `id` as the bucket holds it now.
    func prove(_ id: String, s3: S3Client, bucket: String, at: Date) throws {
        let store = S3Storage(client: s3, bucket: bucket)
        var objects: [RestoreProof.Object] = []
        for key in [Self.layout.backupInfoKey(server: "db", backupID: id),
                    Self.layout.key(for: .backupArchive(server: "db", backupID: id, name: "data", compression: .gzip))] {
            let head = try #require(try store.head(key))
            objects.append(.init(key: Self.layout.relative(key), size: head.size, etag: head.etag, sha256: Hash.sha256(try store.read(key)).hex))
        }
        var db = DrillEvidence.Database(cluster: "db", server: "db", backupID: id, target: "latest", achieved: at, stop: "", timeline: 1,
                                        walSegments: 1, baseBytes: 1, walBytes: 1)
        db.proof = RestoreProof(backupID: id, objects: objects, walFirst: nil, walLast: nil)
        let e = DrillEvidence(id: "\(RFC3339.formatBasic(at))-\(id.suffix(6))", workload: "app", mode: "host", host: "test", startedAt: at, finishedAt: at,
                              target: "latest", targetTime: nil, result: .passed, error: nil, databases: [db], checks: [], rtoSeconds: 1,
                              rtoObjectiveSeconds: 3600, rpoSeconds: 0, rpoObjectiveSeconds: 3600, phases: [:], bytesFetched: 1)
        let (key, bytes) = try DrillEvidence.sealed(e, drctlPrefix: "drctl", keys: try Self.ring())
        try store.put(key, bytes: bytes)
    }

    func plan(_ bucket: String, _ extra: [String]) throws -> [String: Any] {
        let (st, out) = try run(drctlBinary, ["prune", "--source", "s3://\(bucket)/cnpg", "--server", "db", "--retention", "7d", "-o", "json"] + extra,
                                env: rgw.environment)
        try #require(st == 0, "\(out)")
        return try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
    }

    /// A daily backup for 20 days; drills proved the one of 15 days ago, the window's start and
    /// the newest. A backup.info forged half an hour after the 15-day one (its WAL, junk data)
    /// would take that day's slot on backup.info alone, and the real one would go; on proof the
    /// real one holds the day and the forgery is what goes.
    @Test func aForgedBackupCannotTakeATierSlotOnRGW() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "tierforgery")
        let base = Self.lastNoon()
        let specs = (1...20).map { P.Spec(daysAgo: Double($0), status: "DONE", timeline: 1, beginSegment: UInt32(62 - 3 * $0)) }
        try P.write(specs, s3: s3, bucket: bucket, server: "db", now: base)
        let id = { (days: Double) in P.stamp(base.addingTimeInterval(-days * 86400), "yyyyMMdd'T'HHmmss") }
        let real = id(15)
        for (days, at) in [(15.0, -15.0), (8.0, -8.0), (1.0, 0.0)] { try prove(id(days), s3: s3, bucket: bucket, at: Date().addingTimeInterval(at * 86400)) }
        let begin = base.addingTimeInterval(-15 * 86400 + 1800)
        let forged = P.stamp(begin, "yyyyMMdd'T'HHmmss")
        let spec = specs[14]
        try s3.putObject(S3URL(bucket: bucket, key: Self.layout.backupInfoKey(server: "db", backupID: forged)),
                         bytes: Array(P.info(spec, begin: begin, end: begin.addingTimeInterval(30), seg: WALSegment(timeline: 1, log: 0, segment: spec.beginSegment)).utf8))
        try s3.putObject(S3URL(bucket: bucket, key: Self.layout.key(for: .backupArchive(server: "db", backupID: forged, name: "data", compression: .gzip))), bytes: [9])

        let trusted = try plan(bucket, ["--keep-daily", "30", "--trust-unproven"])
        let trustedReport = try #require(trusted["report"] as? [String: String])
        #expect(trustedReport[forged] == "KEPT_DAILY" && (trusted["backupsToDelete"] as? [String] ?? []).contains(real), "\(trustedReport)")
        let proven = try plan(bucket, ["--keep-daily", "30"])
        let report = try #require(proven["report"] as? [String: String])
        #expect(report[real] == "KEPT_DAILY" && report[forged] == "OBSOLETE", "\(report)")
        #expect(!(proven["backupsToDelete"] as? [String] ?? []).contains(real))
        #expect((proven["proven"] as? [String] ?? []).contains(real))
    }

    /// An interrupted prune of drctl's (sealed) and an outcome written by someone else to hide
    /// it: the outcome closes nothing, is named as unauthenticated, and the plan is finished only
    /// as far as today's agrees.
    @Test func aForgedPruneOutcomeHidesNothingOnRGW() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "outcomeforgery")
        try P.write(P.histories[0].specs, s3: s3, bucket: bucket, server: "db", now: Date())
        let (pst, today) = try run(drctlBinary, ["prune", "--source", "s3://\(bucket)/cnpg", "--server", "db", "--retention", "7d", "-o", "json", "--trust-unproven"],
                                   env: rgw.environment)
        try #require(pst == 0, "\(today)")
        var recorded = try JSONCoding.decoder().decode(PrunePlan.self, from: Data(today.utf8))
        let keys = recorded.keysToDelete
        try #require(!keys.isEmpty)
        var journal = PruneJournal(storage: S3Storage(client: s3, bucket: bucket), layout: DrctlLayout(root: "drctl"), server: "db")
        journal.keys = try Self.ring()
        recorded.bucket = bucket
        recorded.root = "cnpg"
        try journal.record(recorded, stamp: "2026-01-01T00:00:00.000000Z-1")
        try s3.putObject(S3URL(bucket: bucket, key: "drctl/prune/db/2026-01-01T00:00:00.000000Z-1.done.json"),
                         bytes: Array(#"{"deleted":\#(keys.count),"failed":[],"locked":[]}"#.utf8))
        let (st, out) = try run(drctlBinary, ["prune", "--source", "s3://\(bucket)/cnpg", "--server", "db", "--retention", "7d", "--trust-unproven"], env: rgw.environment)
        #expect(st == 0 && out.contains("an interrupted prune recorded in s3://\(bucket)/drctl/prune/db/2026-01-01T00:00:00.000000Z-1.json: \(keys.count) of its objects are still selected"), "\(out)")
        #expect(out.contains("ignored 1 unauthenticated drctl record(s)") && out.contains("2026-01-01T00:00:00.000000Z-1.done.json"), "\(out)")
    }

    /// The copy's record stripped of its seal, every ETag emptied ("matches any object of the
    /// right size") and same-size junk put on the copy: the record vouches for nothing, the junk
    /// is replaced from the source and kept beside. On a disk copy (no ETags) a flipped byte is
    /// seen by --verify, named, and repaired.
    @Test func aCopyRecordStrippedOfItsSealAndADiskCopysBitFlipAreFoundOnRGW() throws {
        let s3 = try rgw.client()
        let source = try rgw.bucket(s3, "recforgery-src"), target = try rgw.bucket(s3, "recforgery-dst")
        try P.write(P.histories[0].specs, s3: s3, bucket: source, server: "db", now: Date())
        let dir = tempPath("recforgery")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try rgw.writeKeys(to: dir + "/secrets/copy-keys")
        try (rgw.objectStorePolicy(bucket: source, extra: "  copies: [{to: offsite, prefixes: [barman]}]\n") + rgw.offsitePolicy(bucket: target, secretName: "copy-keys")
             + "---\n\n" + RGW.appPolicy(cluster: "db")).write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        var env = rgw.environment
        env["DRCTL_SECRETS_DIR"] = dir + "/secrets"
        var (st, out) = try run(drctlBinary, ["copy", "--policies", dir], env: env)
        try #require(st == 0, "\(out)")

        let recordKey = S3URL(bucket: target, key: "drctl/copies/rgw.json")
        var bytes: [UInt8] = []
        try s3.getObject(recordKey) { bytes += $0 }
        var record = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        record.removeValue(forKey: "drctlSeal")
        var objects = try #require(record["objects"] as? [String: [String: Any]])
        for k in objects.keys { objects[k]?["etag"] = "" }
        record["objects"] = objects
        try s3.putObject(recordKey, bytes: Array(try JSONSerialization.data(withJSONObject: record)))
        let wal = Self.layout.key(for: .walSegment(server: "db", segment: WALSegment(timeline: 1, log: 0, segment: 5), compression: .gzip))
        try s3.putObject(S3URL(bucket: target, key: wal), bytes: [9])   // the source's is [1]: same size

        let (_, status) = try run(drctlBinary, ["status", "app", "--policies", dir, "-o", "json"], env: env)
        #expect(status.contains("\"recordUnauthenticated\" : true") && status.contains("is not sealed with drctl's record key: it vouches for nothing"), "\(status)")
        (st, out) = try run(drctlBinary, ["copy", "--policies", dir], env: env)
        #expect(st == 0 && out.contains("is not a copy record drctl sealed"), "\(out)")
        var now: [UInt8] = []
        try s3.getObject(S3URL(bucket: target, key: wal)) { now += $0 }
        #expect(now == [1], "the junk was replaced from the source")
        var aside: [String] = []
        try s3.listObjects(bucket: target, prefix: "drctl/changed/rgw/\(wal)@") { aside += $0.objects.map(\.key) }
        #expect(aside.count == 1, "the junk kept beside it: \(aside)")

        // A copy on a disk: no ETag to see a same-size change by; --verify reads it back.
        let disk = dir + "/disk"
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        (st, out) = try run(drctlBinary, ["copy", "--policies", dir, "--to", "offsite", "--target", "file://\(disk)"], env: env)
        try #require(st == 0, "\(out)")
        try Data([9]).write(to: URL(fileURLWithPath: disk + "/" + wal))
        (st, out) = try run(drctlBinary, ["copy", "--policies", dir, "--to", "offsite", "--target", "file://\(disk)"], env: env)
        #expect(st == 0 && out.contains("copied 0 objects"), "by size and record alone the flip is not seen: \(out)")
        (st, out) = try run(drctlBinary, ["copy", "--policies", dir, "--to", "offsite", "--target", "file://\(disk)", "--verify"], env: env)
        #expect(st == 1 && out.contains("DAMAGED on the copy \(wal)") && out.contains("copied 1 objects"), "\(st): \(out)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: disk + "/" + wal)) == Data([1]), "repaired from the source")
    }
}

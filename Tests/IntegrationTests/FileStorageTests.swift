import Foundation
import Testing
import ObjectStore
import Storage
import TestSupport

/// A bucket copied to a disk is read as the bucket: `drctl backups --source file:///copy/cnpg`
/// shows what `--source s3://bucket/cnpg` shows, with no object store reachable at all.
@Suite(.serialized) struct FileStorageTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    @Test func aBucketCopiedToADiskListsTheSameBackups() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "filecopy")
        let copy = db.work + "/copy"
        let source = S3Storage(client: db.s3, bucket: db.bucket), target = FileStorage(root: copy)
        for o in try source.listAll(prefix: "") { try target.put(o.key, bytes: try source.read(o.key, limit: 1 << 30), lastModified: o.lastModified) }
        FileManager.default.createFile(atPath: copy + "/" + FileStorage.marker, contents: nil)

        let (st, fromBucket) = try run(drctlBinary, ["backups", "--source", "s3://\(db.bucket)/cnpg", "-o", "json"], env: rgw.environment)
        try #require(st == 0, "\(fromBucket)")
        // No store at all: the endpoint points nowhere, and nothing needs it.
        var offline = db.drctlEnvironment
        offline["AWS_ENDPOINT_URL"] = "http://127.0.0.1:1"
        let (fst, fromDisk) = try run(drctlBinary, ["backups", "--source", "file://\(copy)/cnpg", "-o", "json"], env: offline)
        #expect(fst == 0 && fromDisk == fromBucket, "the copy reads as the bucket:\n\(fromDisk)\n---\n\(fromBucket)")
        let (tst, table) = try run(drctlBinary, ["backups", "--source", "file://\(copy)/cnpg", "--server", "app-db"], env: offline)
        #expect(tst == 0 && table.contains("barman-cloud server app-db: 1 backups") && table.contains("DONE"), "\(table)")
    }

    /// A point-in-time restore from a bucket copied to a disk, with no object store reachable:
    /// the base backup and every WAL segment after it come from the copy (through
    /// `drctl wal-restore --source file://…` as PostgreSQL's restore_command), and the
    /// restored table holds exactly what the source had archived.
    @Test func aPointInTimeRestoreFromACopyOnDisk() throws {
        let db = try ArchivedDatabase(rgw: rgw, bucket: "filerestore")
        let copy = db.work + "/copy"
        let source = S3Storage(client: db.s3, bucket: db.bucket), target = FileStorage(root: copy)
        for o in try source.listAll(prefix: "cnpg/") { try target.put(o.key, bytes: try source.read(o.key, limit: 1 << 30), lastModified: o.lastModified) }
        var offline = db.drctlEnvironment
        offline["AWS_ENDPOINT_URL"] = "http://127.0.0.1:1"
        offline.removeValue(forKey: "AWS_ACCESS_KEY_ID")
        offline.removeValue(forKey: "AWS_SECRET_ACCESS_KEY")
        let dir = db.work + "/restored", port = try freePort()
        let (st, out) = try run(drctlBinary, ["restore", "--source", "file://\(copy)/cnpg", "--server", "app-db", "--at", "latest", "--to", dir,
                                              "--yes", "--start", "--port", String(port), "--scratch-dir", db.work + "/scratch"], env: offline)
        defer { _ = try? run("/usr/sbin/runuser", ["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D", dir, "-m", "immediate", "-w", "stop"]) }
        try #require(st == 0, "\(out)")
        let (qst, rows) = try run("/usr/bin/psql", ["-X", "-h", dir, "-p", String(port), "-U", "postgres", "-Atqc", "select count(*), max(id) from t"])
        #expect(qst == 0 && rows.trimmingCharacters(in: .whitespacesAndNewlines) == "42|42", "40 rows from the base backup, 2 replayed from the copy's WAL: \(rows)")
    }
}

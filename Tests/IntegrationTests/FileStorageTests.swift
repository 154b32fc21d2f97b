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

/// The acceptance of the storage interface: a bucket copied to a plain directory tree serves
/// every command that reads a bucket, with its RGW stopped (not merely unreachable): listing,
/// status, catalog, prune, a drill, and an exact point-in-time restore.
@Suite(.serialized) struct CopyWithTheStoreGoneTests {
    @Test func everyCommandReadsACopyWhenTheRGWIsStopped() throws {
        let rgw = try RGW.startPrivate()
        defer { rgw.stop() }
        let db = try ArchivedDatabase(rgw: rgw, bucket: "offsite")
        // A target between two commits: 43 is before it, 44 after.
        let target = try db.targetBetweenTwoCommits()

        // A plain tree, as any copy tool leaves it (object times kept).
        let copy = db.work + "/copy"
        let source = S3Storage(client: db.s3, bucket: db.bucket), tree = FileStorage(root: copy)
        for o in try source.listAll(prefix: "") { try tree.put(o.key, bytes: try source.read(o.key, limit: 1 << 30), lastModified: o.lastModified) }
        // Marks the top of the copy as the bucket: file://copy/cnpg is then the key prefix cnpg.
        FileManager.default.createFile(atPath: copy + "/" + FileStorage.marker, contents: nil)
        _ = try run(packageRoot.appendingPathComponent("scripts/pg-down.sh").path, [db.work + "/src"])
        rgw.stop()
        let (down, _) = try run("/usr/bin/curl", ["-sS", "-m", "2", rgw.endpoint])
        try #require(down != 0, "the RGW is stopped")

        var env = db.drctlEnvironment
        env["AWS_ENDPOINT_URL"] = rgw.endpoint   // points at the stopped RGW: nothing may need it
        let policies = db.work + "/policies"
        try FileManager.default.createDirectory(atPath: policies, withIntermediateDirectories: true)
        try (rgw.objectStorePolicy(bucket: db.bucket) + RGW.appPolicy(cluster: "app-db") + """
              drill:
                schedule: "0 6 * * *"
                checks:
                  - sql: {cluster: app-db, database: postgres, query: "select count(*) from t", expect: "= 44"}
            """).write(toFile: policies + "/p.yaml", atomically: true, encoding: .utf8)

        let (bst, backups) = try run(drctlBinary, ["backups", "--source", "file://\(copy)/cnpg", "--server", "app-db"], env: env)
        #expect(bst == 0 && backups.contains("app-db: 1 backups"), "\(backups)")

        let (sst, status) = try run(drctlBinary, ["status", "--policies", policies, "--source", "file://\(copy)", "-o", "json"], env: env)
        #expect((sst == 0 || sst == 4) && status.contains("\"workload\" : \"app\"") && !status.contains("could not be read"), "\(sst): \(status)")

        let catalog = db.work + "/catalog.sqlite"
        let (cst, synced) = try run(drctlBinary, ["catalog", "sync", "--policies", policies, "--store-copy", "file://\(copy)", "--catalog", catalog], env: env)
        #expect(cst == 0 && synced.contains("file://\(copy)/cnpg/"), "\(synced)")
        let (cbst, fromCatalog) = try run(drctlBinary, ["backups", "--source", "file://\(copy)/cnpg", "--server", "app-db", "--catalog", catalog, "-o", "json"], env: env)
        let (fbst, fromCopy) = try run(drctlBinary, ["backups", "--source", "file://\(copy)/cnpg", "--server", "app-db", "-o", "json"], env: env)
        let backupID = try #require(fromCopy.firstMatch(of: /"backupID" : "(\d{8}T\d{6})"/)?.1, "\(fromCopy)")
        #expect(cbst == 0 && fbst == 0 && fromCatalog.contains("\"backupID\" : \"\(backupID)\""), "the catalog of the copy knows its backup: \(fromCatalog)")

        let (pst, pruned) = try run(drctlBinary, ["prune", "--source", "file://\(copy)/cnpg", "--server", "app-db", "--retention", "7d"], env: env)
        #expect(pst == 0 && pruned.contains("would delete 0 backups"), "\(pruned)")

        let (vst, drill) = try run(drctlBinary, ["verify", "app", "--policies", policies, "--source", "file://\(copy)", "--scratch-dir", db.work + "/scratch", "-o", "json"], env: env)
        #expect(vst == 0 && drill.contains("\"result\" : \"passed\""), "\(drill)")
        let evidence = (try? FileManager.default.contentsOfDirectory(atPath: copy + "/drctl/evidence/app")) ?? []
        #expect(evidence.count == 1, "the drill's evidence went to the copy: \(evidence)")
        let named = drill.contains("\"source\" : \"file://\(copy)\"") || drill.contains("\"source\" : \"file:\\/\\/\(copy.replacingOccurrences(of: "/", with: "\\/"))\"")
        #expect(named, "the evidence names the copy it proves: \(drill)")
        // A drill of a copy is not the policies' store's: it is kept out of their metrics, and a
        // copy's status is not written into a catalog's RPO history.
        let (pgst, pgerr) = try run(drctlBinary, ["verify", "app", "--policies", policies, "--source", "file://\(copy)", "--pushgateway", "http://127.0.0.1:9"], env: env)
        #expect(pgst == 64 && pgerr.contains("--pushgateway"), "\(pgst): \(pgerr)")
        let (scst, scerr) = try run(drctlBinary, ["status", "--policies", policies, "--source", "file://\(copy)", "--catalog", catalog], env: env)
        #expect(scst == 64 && scerr.contains("--catalog"), "\(scst): \(scerr)")

        let restored = try db.restoredRows(["--source", "file://\(copy)/cnpg", "--server", "app-db"], at: target, env: env)
        try #require(restored.status == 0, "\(restored.output)")
        #expect(restored.rows == "43|43", "exactly up to the target: \(restored.rows)")
    }
}

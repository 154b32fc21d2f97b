import Foundation
import Hashing
import ObjectStore
import Storage
import Support
import Testing
import TestSupport

/// Policies of `db`'s store copied to `copyBucket` on `offsite` (ObjectStore "offsite", keys in
/// a Secret mounted where deploy/ mounts it), and drctl's environment for them.
func copyPolicies(_ db: ArchivedDatabase, to offsite: RGW, bucket copyBucket: String, copy: String) throws -> (String, [String: String]) {
    let secrets = db.work + "/secrets"
    try offsite.writeKeys(to: secrets + "/offsite-keys")
    let policies = db.work + "/policies"
    try FileManager.default.createDirectory(atPath: policies, withIntermediateDirectories: true)
    try (db.rgw.objectStorePolicy(bucket: db.bucket, extra: "  copies: [\(copy)]\n") + offsite.offsitePolicy(bucket: copyBucket, secretName: "offsite-keys")
         + "---\n\n" + RGW.appPolicy(cluster: "app-db")).write(toFile: policies + "/p.yaml", atomically: true, encoding: .utf8)
    var env = db.drctlEnvironment
    env["DRCTL_SECRETS_DIR"] = secrets
    env.removeValue(forKey: "AWS_ENDPOINT_URL")   // each store's endpoint from its policy
    return (policies, env)
}

/// `drctl copy` between two real RGWs: the copy has every object byte for byte, a re-run copies
/// nothing, a run killed midway is finished by the next without starting over, a primary that
/// lost everything leaves its copy whole, and with the primary's RGW stopped the copy gives an
/// exact point-in-time restore.
@Suite(.serialized) struct CopyToAnotherStoreTests {
    @Test func aCopyOnAnotherRGWRestoresExactlyWithThePrimaryGone() throws {
        let primary = try RGW.startPrivate()
        defer { primary.stop() }
        let offsite = try RGW.get()
        let db = try ArchivedDatabase(rgw: primary, bucket: "primary")
        let copyBucket = "offsite-\(UInt32.random(in: 0...UInt32.max))"
        let copyS3 = try offsite.client()
        try copyS3.createBucket(copyBucket)
        // The copy's keys, where deploy/ mounts its Secret; the environment holds the primary's.
        let (policies, env) = try copyPolicies(db, to: offsite, bucket: copyBucket, copy: "{to: offsite, maxLag: 1h}")

        func objects(_ s3: S3Client, _ bucket: String, _ prefix: String) throws -> [String: String] {
            var keys: [String] = []
            try s3.listObjects(bucket: bucket, prefix: prefix) { keys += $0.objects.map(\.key) }
            var out: [String: String] = [:]
            for k in keys where !k.hasPrefix("drctl/copies/") {
                var bytes: [UInt8] = []
                try s3.getObject(S3URL(bucket: bucket, key: k)) { bytes += $0 }
                out[k] = sha256Hex(bytes)
            }
            return out
        }
        func copied(_ out: String) -> Int? { out.firstMatch(of: /copied (\d+) objects/).flatMap { Int($0.1) } }

        var (st, out) = try run(drctlBinary, ["copy", "--policies", policies], env: env)
        try #require(st == 0, "\(out)")
        let first = try #require(copied(out), "\(out)")
        #expect(first > 0 && out.contains("record s3://\(copyBucket)/drctl/copies/rgw.json"), "\(out)")
        #expect(try objects(copyS3, copyBucket, "cnpg/") == objects(db.s3, db.bucket, "cnpg/"), "the copy holds every barman object, byte for byte")
        #expect(!out.contains(primary.secretKey) && !out.contains(offsite.secretKey))

        (st, out) = try run(drctlBinary, ["copy", "--policies", policies, "-o", "json"], env: env)
        #expect(st == 0 && out.contains("\"copied\" : 0"), "an unchanged re-run copies nothing: \(out)")

        // New WAL, then a target between two commits (43 before, 44 after).
        let target = try db.targetBetweenTwoCommits()
        // Enough new objects that a copy takes a while (as a day of Velero backups would).
        let bulk = (0..<400).map { "velero/backups/bulk/\($0).json" }
        let (s3, bucket) = (db.s3, db.bucket)
        _ = try Parallel.map(bulk, threads: 8) { key in try s3.putObject(S3URL(bucket: bucket, key: key), bytes: Array(repeating: UInt8(key.count), count: 16 << 10)) }
        // Status reads the copy with its own keys: behind by the new objects, within its maxLag.
        let (sst, status) = try run(drctlBinary, ["status", "--policies", policies, "-o", "json"], env: env)
        #expect((sst == 0 || sst == 4) && status.contains("\"store\" : \"offsite\"") && status.contains("\"maxLagSeconds\" : 3600")
                && status.firstMatch(of: /"pending" : [1-9]/) != nil && !status.contains("could not be read"), "\(status)")
        let (dryst, dry) = try run(drctlBinary, ["copy", "--policies", policies, "--dry-run", "-o", "json"], env: env)
        let pending = try #require(dry.firstMatch(of: /"toCopy" : (\d+)/).flatMap { Int($0.1) }, "\(dry)")
        #expect(dryst == 0 && pending > 0 && dry.contains("\"lagSeconds\""), "\(dry)")

        // Killed as soon as it starts copying; the next run finishes without starting over.
        let pid = try spawn(drctlBinary, ["copy", "--policies", policies, "--workers", "2"], env: env, output: db.work + "/killed.log")
        let killedLog = { (try? String(contentsOfFile: db.work + "/killed.log", encoding: .utf8)) ?? "" }
        try #require(waitUntil(600, every: 50_000) { killedLog().contains(" 100/") }, "the copy got going: \(killedLog())")
        kill(pid, SIGKILL)
        _ = try reap(pid)
        print("the killed copy had got this far:\n" + killedLog())
        (st, out) = try run(drctlBinary, ["copy", "--policies", policies], env: env)
        try #require(st == 0, "\(out)")
        // What the killed run put (at least 100 objects, unrecorded yet) is recognised, not copied again.
        #expect((copied(out) ?? .max) <= pending - 100, "after the kill only what was still missing is copied: \(out) (pending before: \(pending))")
        #expect(try objects(copyS3, copyBucket, "velero/") == objects(db.s3, db.bucket, "velero/"))
        let (_, caught) = try run(drctlBinary, ["status", "--policies", policies], env: env)
        #expect(caught.contains("app -> offsite: lag 0s (maxLag 1h), 0 objects to copy, last complete copy 20")
                && caught.contains("newest recoverable point on the copy 20"), "the copy's own newest point, read from the copy: \(caught)")
        _ = try run(packageRoot.appendingPathComponent("scripts/pg-down.sh").path, [db.work + "/src"])
        let archived = try objects(db.s3, db.bucket, "cnpg/")
        #expect(try objects(copyS3, copyBucket, "cnpg/") == archived, "after the kill and the re-run, the copy is whole")

        // Every base backup file and WAL segment overwritten at the primary with one byte (written
        // once by barman: an attack): the copy keeps every original, names each, and fails.
        var written: [String] = []
        try db.s3.listObjects(bucket: db.bucket, prefix: "cnpg/app-db/") { written += $0.objects.map(\.key).filter { !$0.hasSuffix("backup.info") } }
        _ = try Parallel.map(written, threads: 8) { key in try s3.putObject(S3URL(bucket: bucket, key: key), bytes: [0]) }
        (st, out) = try run(drctlBinary, ["copy", "--policies", policies], env: env)
        #expect(st == 1 && out.contains("CHANGED AT THE SOURCE") && written.prefix(20).allSatisfy(out.contains), "\(st): \(out)")
        print("$ drctl copy  # after \(written.count) base backup and WAL objects were overwritten at the primary\n" + out.split(separator: "\n").prefix(12).joined(separator: "\n"))
        #expect(try objects(copyS3, copyBucket, "cnpg/") == archived, "the copy keeps the originals")
        var aside: [String] = []
        try copyS3.listObjects(bucket: copyBucket, prefix: "drctl/changed/rgw/") { aside += $0.objects.map(\.key) }
        #expect(aside.count == written.count, "each new version beside its original: \(aside.count) of \(written.count)")
        let (cst, changedStatus) = try run(drctlBinary, ["status", "--policies", policies], env: env)
        #expect(cst == 4 && changedStatus.contains("changed at the source after they were copied to offsite"), "\(changedStatus)")

        // The primary wiped out (ransomware, a mistaken rm): the next copy deletes nothing.
        var keys: [String] = []
        try db.s3.listObjects(bucket: db.bucket, prefix: "") { keys += $0.objects.map(\.key) }
        for chunk in stride(from: 0, to: keys.count, by: 500) { _ = try db.s3.deleteObjects(bucket: db.bucket, keys: Array(keys[chunk..<min(chunk + 500, keys.count)])) }
        (st, out) = try run(drctlBinary, ["copy", "--policies", policies], env: env)
        #expect(st == 0 && out.contains("copied 0 objects") && out.contains("only on the copy (kept)"), "\(out)")
        #expect(try objects(copyS3, copyBucket, "cnpg/") == archived, "the copy keeps what the primary lost")

        // The primary's RGW gone: an exact point-in-time restore from the copy, by its URL with
        // the copy's keys in the environment, and by its ObjectStore's name with its own mounted keys.
        primary.stop()
        var fromCopy = offsite.environment
        fromCopy["DRCTL_DATA_DIR"] = db.work + "/data"
        let byURL = try db.restoredRows(["--source", "s3://\(copyBucket)/cnpg", "--server", "app-db"], at: target, env: fromCopy)
        try #require(byURL.status == 0, "\(byURL.output)")
        #expect(byURL.rows == "43|43", "exactly up to the target: \(byURL.rows)")
        let byName = try db.restoredRows(["app", "--policies", policies, "--store", "offsite"], at: target, env: env, into: "by-name")
        try #require(byName.status == 0, "\(byName.output)")
        #expect(byName.rows == "43|43" && byName.output.contains("s3://\(copyBucket)/cnpg"), "from ObjectStore offsite, exactly: \(byName.rows) \(byName.output)")
        let (sst2, onCopy) = try run(drctlBinary, ["status", "app", "--policies", policies, "--store", "offsite", "-o", "json"], env: env)
        #expect((sst2 == 0 || sst2 == 4) && onCopy.contains("\"workload\" : \"app\"") && !onCopy.contains("no barman-cloud archive"), "status reads the copy by name: \(onCopy)")
        let (pst, pruned) = try run(drctlBinary, ["prune", "app", "--policies", policies, "--store", "offsite"], env: env)
        #expect(pst == 0 && pruned.contains("on ObjectStore offsite (s3://\(copyBucket)/cnpg)") && pruned.contains("would delete 0 backups"), "\(pruned)")
        let (wst, wrong) = try run(drctlBinary, ["status", "app", "--policies", policies, "--store", "nosuch"], env: env)
        #expect(wst == 64 && wrong.contains("no ObjectStore named 'nosuch'"), "\(wst): \(wrong)")

        // drill.from: the policy's scheduled drill proves the copy, the primary still down.
        try (try String(contentsOfFile: policies + "/p.yaml", encoding: .utf8) + """
              drill:
                schedule: "0 5 * * *"
                from: offsite
                checks:
                  - sql: {cluster: app-db, database: postgres, query: "select count(*) from t", expect: ">= 43"}

            """).write(toFile: policies + "/p.yaml", atomically: true, encoding: .utf8)
        let (vst, drill) = try run(drctlBinary, ["verify", "app", "--policies", policies, "--scratch-dir", db.work + "/scratch-drill", "-o", "json"], env: env)
        #expect(vst == 0 && drill.contains("\"result\" : \"passed\"") && drill.contains("ObjectStore offsite (drill.from)"), "\(drill)")
        var evidence: [String] = []
        try copyS3.listObjects(bucket: copyBucket, prefix: "drctl/evidence/app/") { evidence += $0.objects.map(\.key) }
        #expect(evidence.count == 1, "the drill's evidence went to the copy it proves: \(evidence)")
    }

    /// The copy's store going down in the middle of a copy (every PUT answered 503 from then on):
    /// the run gives up after a run of failures instead of retrying every object, names them and
    /// exits 1; with the store back, the next run copies only what is missing.
    @Test func theCopysStoreGoingDownMidCopyFailsByNameAndTheNextRunFinishes() throws {
        let rgw = try RGW.get()
        let s3 = try rgw.client()
        let source = try rgw.bucket(s3, "down-src"), target = try rgw.bucket(s3, "down-dst")
        let keys = (0..<300).map { "velero/backups/bulk/\($0).json" }
        _ = try Parallel.map(keys, threads: 8) { key in try s3.putObject(S3URL(bucket: source, key: key), bytes: Array(repeating: UInt8(key.count), count: 16 << 10)) }
        let dir = tempPath("copy-down")
        try rgw.writeKeys(to: dir + "/secrets/copy-keys")
        try (rgw.objectStorePolicy(bucket: source, extra: "  copies: [{to: offsite, prefixes: [velero]}]\n")
             + rgw.offsitePolicy(bucket: target, secretName: "copy-keys", extra: "pathStyle: true, ")).write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        var env = rgw.environment
        env["DRCTL_SECRETS_DIR"] = dir + "/secrets"
        let proxy = try FaultProxy(upstreamPort: rgw.port)
        let logFile = dir + "/copy.log"
        let pid = try spawn(drctlBinary, ["copy", "--policies", dir, "--to", "offsite", "--to-endpoint", proxy.endpoint, "--workers", "2"], env: env, output: logFile)
        let log = { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }
        try #require(waitUntil(600, every: 50_000) { log().contains(" 100/") }, "the copy got going: \(log())")
        try proxy.inject("503", count: 1_000_000, method: "PUT")
        let status = exitCode(try reap(pid))
        let out = log()
        #expect(status == 1 && out.contains("not tried: the last 16 objects failed in a row") && out.contains("FAILED"), "\(status): \(out.suffix(3000))")
        print("$ drctl copy --to offsite\n" + out.split(separator: "\n").filter { !$0.contains(" warning ") }.joined(separator: "\n"))
        let tries = try proxy.requests().filter { $0.method == "PUT" }.count
        #expect(tries < 100 + 300, "once the store was seen down the rest were not tried: \(tries) PUTs")

        // The store back: only what is missing is copied, and the copy is whole.
        let (st, again) = try run(drctlBinary, ["copy", "--policies", dir, "--to", "offsite"], env: env)
        let copied = again.firstMatch(of: /copied (\d+) objects/).flatMap { Int($0.1) } ?? -1
        #expect(st == 0 && copied > 0 && copied <= 200, "\(again)")
        var onCopy: [String] = []
        try s3.listObjects(bucket: target, prefix: "velero/") { onCopy += $0.objects.map(\.key) }
        #expect(Set(onCopy) == Set(keys), "\(onCopy.count) of \(keys.count)")
    }

    /// `objectLock: required`: nothing is copied into a bucket that does not lock what is written
    /// to it; a bucket with Object Lock and a default retention takes the copy, locked.
    @Test func aCopyThatRequiresObjectLockRefusesABucketWithout() throws {
        let rgw = try RGW.get()
        let s3 = try rgw.client()
        let source = try rgw.bucket(s3, "lock-src")
        let wal = "cnpg/app-db/wals/0000000100000000/000000010000000000000001.gz"
        try s3.putObject(S3URL(bucket: source, key: wal), bytes: [1, 2, 3])
        let plain = try rgw.bucket(s3, "lock-plain")
        let suffix = UInt32.random(in: 0...UInt32.max)
        let unset = "lock-nodefault-\(suffix)", locked = "lock-dst-\(suffix)"
        try s3.createBucket(unset, objectLock: BucketObjectLock(enabled: true))
        try s3.createBucket(locked, objectLock: BucketObjectLock(enabled: true, mode: "GOVERNANCE", days: 1))
        let dir = tempPath("copy-lock")
        try rgw.writeKeys(to: dir + "/secrets/copy-keys")
        func policies(_ target: String) throws {
            try (rgw.objectStorePolicy(bucket: source, extra: "  copies: [{to: offsite, prefixes: [barman], objectLock: required}]\n")
                 + rgw.offsitePolicy(bucket: target, secretName: "copy-keys", extra: "pathStyle: true, ")).write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        }
        func keys(_ bucket: String) throws -> [String] {
            var keys: [String] = []
            try s3.listObjects(bucket: bucket, prefix: "") { keys += $0.objects.map(\.key) }
            return keys
        }
        var env = rgw.environment
        env["DRCTL_SECRETS_DIR"] = dir + "/secrets"
        try policies(plain)
        var (st, out) = try run(drctlBinary, ["copy", "--policies", dir], env: env)
        #expect(st != 0 && out.contains("requires Object Lock") && out.contains("has no Object Lock"), "\(st): \(out)")
        print("$ drctl copy\n" + out)
        #expect(try keys(plain).isEmpty, "nothing was copied")
        (st, out) = try run(drctlBinary, ["copy", "--policies", dir, "--dry-run"], env: env)
        #expect(st != 0 && out.contains("refused: Object Lock is required"), "\(st): \(out)")
        print("$ drctl copy --dry-run\n" + out)

        try policies(unset)
        (st, out) = try run(drctlBinary, ["copy", "--policies", dir], env: env)
        #expect(st != 0 && out.contains("no default retention"), "\(st): \(out)")
        #expect(try keys(unset).isEmpty, "nothing was copied")

        try policies(locked)
        (st, out) = try run(drctlBinary, ["copy", "--policies", dir], env: env)
        #expect(st == 0 && out.contains("copied 1 objects"), "\(out)")
        let head = try #require(try S3Storage(client: s3, bucket: locked).head(wal))
        #expect(head.lock?.retainUntil.map { $0 > Date() } == true, "the copied object is locked by the bucket's default retention: \(String(describing: head.lock))")
    }

    /// An encrypted copy (age): nothing readable leaves, Debian's age decrypts it, and with the
    /// primary's RGW stopped drctl restores from it exactly, given the identity, and says which
    /// one it needs when it is missing; a changed object fails clearly.
    @Test func anEncryptedCopyRestoresExactlyAndHoldsNoPlaintext() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/age-keygen"), "Debian's age is missing: run scripts/install-deps.sh")
        let primary = try RGW.startPrivate()
        defer { primary.stop() }
        let offsite = try RGW.get()
        let db = try ArchivedDatabase(rgw: primary, bucket: "plain")
        _ = try db.psql("create table secret_rows(v text); insert into secret_rows values ('the-plaintext-row-4711')")
        let target = try db.targetBetweenTwoCommits()
        _ = try run(packageRoot.appendingPathComponent("scripts/pg-down.sh").path, [db.work + "/src"])

        let key = db.work + "/age-key.txt"
        try #require(try run("/usr/bin/age-keygen", ["-o", key]).0 == 0)
        let recipient = try run("/usr/bin/age-keygen", ["-y", key]).1.trimmingCharacters(in: .whitespacesAndNewlines)
        let copyBucket = "sealed-\(UInt32.random(in: 0...UInt32.max))"
        let copyS3 = try offsite.client()
        try copyS3.createBucket(copyBucket)
        let (policies, env) = try copyPolicies(db, to: offsite, bucket: copyBucket, copy: "{to: offsite, encryption: {recipients: [\(recipient)]}}")
        let (st, out) = try run(drctlBinary, ["copy", "--policies", policies], env: env)
        try #require(st == 0, "\(out)")

        // Every copied object is an age file: no gzip magic, no page header, no known row.
        var keys: [String] = []
        try copyS3.listObjects(bucket: copyBucket, prefix: "cnpg/") { keys += $0.objects.map(\.key) }
        try #require(!keys.isEmpty)
        for k in keys {
            var bytes: [UInt8] = []
            try copyS3.getObject(S3URL(bucket: copyBucket, key: k)) { bytes += $0 }
            #expect(bytes.starts(with: Array("age-encryption.org/v1\n".utf8)), "\(k) is not an age file")
            #expect(!String(decoding: bytes, as: UTF8.self).contains("the-plaintext-row-4711") && !bytes.starts(with: [0x1f, 0x8b]), "\(k) holds plaintext")
        }
        // Debian's age decrypts any of them without drctl.
        let wal = try #require(keys.first { $0.contains("/wals/") && $0.hasSuffix(".gz") })
        _ = try copyS3.download(S3URL(bucket: copyBucket, key: wal), to: db.work + "/wal.age", overwrite: true)
        let (dst, dout) = try run("/usr/bin/age", ["-d", "-i", key, "-o", db.work + "/wal.gz", db.work + "/wal.age"])
        #expect(dst == 0, "\(dout)")
        var original: [UInt8] = []
        try db.s3.getObject(S3URL(bucket: db.bucket, key: wal)) { original += $0 }
        #expect(FileManager.default.contents(atPath: db.work + "/wal.gz").map(Array.init) == original)

        primary.stop()
        var fromCopy = offsite.environment
        fromCopy["DRCTL_DATA_DIR"] = db.work + "/data"
        let source = "s3://\(copyBucket)/cnpg"
        let (nst, nout) = try run(drctlBinary, ["backups", "--source", source, "--server", "app-db"], env: fromCopy)
        #expect(nst == 3 && nout.contains("encrypted with age to \(recipient)") && nout.contains("--identity"), "\(nout)")
        let restored = try db.restoredRows(["--source", source, "--server", "app-db", "--identity", key], at: target, env: fromCopy)
        try #require(restored.status == 0, "\(restored.output)")
        #expect(!restored.output.contains("AGE-SECRET-KEY-"), "the identity is never printed")
        #expect(restored.rows == "43|43", "exactly up to the target, from the encrypted copy: \(restored.rows)")
        let byName = try db.restoredRows(["app", "--policies", policies, "--store", "offsite", "--identity", key], at: target, env: env, into: "by-name")
        #expect(byName.status == 0 && byName.rows == "43|43", "by the copy's ObjectStore, encrypted: \(byName.rows) \(byName.output)")

        // Key rotation with the primary still down: --reencrypt rewrites the copy from itself for
        // the new recipient; Debian's age opens it with the new key only.
        let newKey = db.work + "/age-key-2.txt"
        try #require(try run("/usr/bin/age-keygen", ["-o", newKey]).0 == 0)
        let newRecipient = try run("/usr/bin/age-keygen", ["-y", newKey]).1.trimmingCharacters(in: .whitespacesAndNewlines)
        let policyFile = policies + "/p.yaml"
        try (try String(contentsOfFile: policyFile, encoding: .utf8)).replacingOccurrences(of: recipient, with: newRecipient)
            .write(toFile: policyFile, atomically: true, encoding: .utf8)
        let (rest, rout) = try run(drctlBinary, ["copy", "--policies", policies, "--reencrypt", "--identity", key], env: env)
        let rewritten = rout.firstMatch(of: /re-encrypted (\d+) objects/).flatMap { Int($0.1) } ?? 0
        #expect(rest == 0 && rewritten >= keys.count, "every object, the barman ones among them: \(rout)")
        #expect(!rout.contains("AGE-SECRET-KEY-"))
        print("$ drctl copy --reencrypt --identity old-key.txt\n" + rout)
        let wal2 = try #require(keys.first { $0.contains("/wals/") })
        var rotated: [UInt8] = []
        try copyS3.getObject(S3URL(bucket: copyBucket, key: wal2)) { rotated += $0 }
        try Data(rotated).write(to: URL(fileURLWithPath: db.work + "/rotated.age"))
        #expect(try run("/usr/bin/age", ["-d", "-i", newKey, "-o", db.work + "/rotated.out", db.work + "/rotated.age"]).0 == 0, "the new key opens it")
        #expect(try run("/usr/bin/age", ["-d", "-i", key, "-o", "/dev/null", db.work + "/rotated.age"]).0 != 0, "the old key no longer does")
        let (again, aout) = try run(drctlBinary, ["copy", "--policies", policies, "--reencrypt", "--identity", newKey], env: env)
        #expect(again == 0 && aout.contains("re-encrypted 0 objects"), "\(aout)")

        // One flipped byte in the copy: refused, named, not silently short.
        let info = try #require(keys.first { $0.hasSuffix("/backup.info") })
        var sealed: [UInt8] = []
        try copyS3.getObject(S3URL(bucket: copyBucket, key: info)) { sealed += $0 }
        sealed[sealed.count - 3] ^= 0x40
        _ = try copyS3.putObject(S3URL(bucket: copyBucket, key: info), bytes: sealed)
        let (fst, fout) = try run(drctlBinary, ["backups", "--source", source, "--server", "app-db", "--identity", newKey], env: fromCopy)
        #expect(fout.contains("problem: \(info): ") && fout.contains("does not authenticate (the object was changed or truncated)"), "\(fst): \(fout)")
    }

    /// `drctl serve` copies on its schedule and reports each copy: lag 0 once done, the time of
    /// the last complete copy, the copy up.
    @Test func serveCopiesOnItsScheduleAndReportsEachCopy() throws {
        let rgw = try RGW.get()
        let db = try ArchivedDatabase(rgw: rgw, bucket: "servecopy")
        let copyBucket = "servecopy-dst-\(UInt32.random(in: 0...UInt32.max))"
        try rgw.client().createBucket(copyBucket)
        let (policies, env) = try copyPolicies(db, to: rgw, bucket: copyBucket, copy: "{to: offsite, maxLag: 1h}")
        let svc = try ServeTests.Service(["--policies", policies, "--copy-schedule", "*/2 * * * * *", "--sync-schedule", "*/2 * * * * *",
                                          "--catalog", db.work + "/catalog.sqlite", "--scratch-dir", db.work], env: env, log: db.work + "/serve.log")
        let done = try waitUntil(600, every: 100_000) {
            try svc.metric(#"drctl_copy_lag_seconds{workload="app",copy="offsite"}"#) == 0
                && (try svc.metric(#"drctl_copy_last_success_timestamp_seconds{workload="app",copy="offsite"}"#) ?? 0) > Date().timeIntervalSince1970 - 600
        }
        #expect(done, "\(svc.text().suffix(3000))")
        #expect(try svc.metric(#"drctl_copy_up{workload="app",copy="offsite"}"#) == 1)
        #expect(svc.text().contains("copy rgw -> offsite: copied "), "\(svc.text().suffix(2000))")
        #expect(try rgw.client().headObject(S3URL(bucket: copyBucket, key: "drctl/copies/rgw.json")).size > 0)
    }

    /// The copy's keys are its own: without them drctl refuses, naming where it looked, and never
    /// falls back to the source's.
    @Test func aCopyWithoutItsOwnKeysIsRefused() throws {
        let rgw = try RGW.get()
        let dir = tempPath("copy-keys")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try (rgw.objectStorePolicy(bucket: "nokeys-src", extra: "  copies: [{to: offsite}]\n")
             + rgw.offsitePolicy(bucket: "nokeys-dst", secretName: "offsite-keys")).write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        var env = rgw.environment
        env["DRCTL_SECRETS_DIR"] = dir + "/secrets"
        let (st, out) = try run(drctlBinary, ["copy", "--policies", dir], env: env)
        #expect(st == 3 && out.contains("the keys of ObjectStore offsite (the copy's own, never the source's)") && out.contains(dir + "/secrets/offsite-keys"), "\(out)")
        #expect(!out.contains(rgw.secretKey))
    }
}

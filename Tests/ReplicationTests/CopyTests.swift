import Foundation
import Testing
@testable import Replication
@testable import Storage
import Hashing
import Age
import Records

/// Copies between in-memory stores: what goes where, what a re-run skips, what a change, a
/// failure, a lost record or a forged one do. Nothing on the copy is ever deleted.
struct CopyTests {
    static let routes = [CopyRoute(from: "cnpg", to: "offsite/cnpg"), CopyRoute(from: "velero", to: "offsite/velero"),
                         CopyRoute(from: "drctl", to: "offsite/drctl", skip: ["copies/"])]
    static let stateKey = "offsite/drctl/copies/primary.json"

    static func primary() -> MemoryStorage {
        MemoryStorage([
            "cnpg/db/base/20261201T000000/backup.info": Array("status=DONE\n".utf8),
            "cnpg/db/base/20261201T000000/data.tar.gz": Array(repeating: 7, count: 5000),
            "cnpg/db/wals/0000000100000000/000000010000000000000001.gz": Array(repeating: 1, count: 3000),
            "velero/backups/n8n-daily/velero-backup.json": Array("{}".utf8),
            "drctl/evidence/app/1.json": Array("{}".utf8),
            "drctl/copies/elsewhere.json": Array("{}".utf8),   // a record of the primary's own copies: not copied
            "unrelated/key": [1],
        ])
    }

    static let ring = RecordKeyring(keys: [RecordKey(id: "test", secret: [UInt8](repeating: 5, count: 32))])

    func runner(_ source: MemoryStorage, _ target: MemoryStorage) -> CopyRunner {
        var r = CopyRunner(source: source, target: target, stateKey: Self.stateKey)
        r.keys = Self.ring
        r.inMemoryLimit = 4000   // the 5000-byte tar goes through the spool
        r.workers = 3
        return r
    }

    func puts(_ s: MemoryStorage, since n: Int) -> [String] {
        s.log.dropFirst(n).filter { $0.hasPrefix("put ") && !$0.contains("/drctl/copies/primary.") }.map { String($0.dropFirst(4)) }
    }

    /// Deletions on the copy other than of drctl's own journal parts (folded into the record at a run's end).
    func deletes(_ s: MemoryStorage, since n: Int = 0) -> [String] {
        s.log.dropFirst(n).filter { $0.hasPrefix("delete") && !$0.contains(CopyInspector.journalPrefix(Self.stateKey)) }
    }

    @Test func copiesEachKindUnderTheTargetsPrefixesAndARerunCopiesNothing() throws {
        let src = Self.primary(), dst = MemoryStorage()
        let report = try runner(src, dst).run(routes: Self.routes)
        #expect(report.copied == 5 && report.failed.isEmpty && report.lagSeconds == 0, "\(report)")
        for key in ["cnpg/db/base/20261201T000000/data.tar.gz", "cnpg/db/wals/0000000100000000/000000010000000000000001.gz",
                    "velero/backups/n8n-daily/velero-backup.json", "drctl/evidence/app/1.json"] {
            #expect(dst.contents("offsite/" + key) == src.contents(key), "\(key)")
        }
        #expect(dst.contents("offsite/drctl/copies/elsewhere.json") == nil && dst.contents("offsite/unrelated/key") == nil)
        let state = try runner(src, dst).loadState()
        #expect(state.objects.count == 5 && state.lastSuccess != nil)
        #expect(state.objects["offsite/cnpg/db/base/20261201T000000/data.tar.gz"]?.sha256 == "\(sha(Array(repeating: 7, count: 5000)))")

        let mark = dst.log.count
        let again = try runner(src, dst).run(routes: Self.routes)
        #expect(again.copied == 0 && again.upToDate == 5, "\(again)")
        #expect(puts(dst, since: mark).isEmpty, "\(dst.log.dropFirst(mark))")
    }

    /// backup.info is rewritten by barman-cloud (STARTED, then DONE): the copy takes the new one
    /// and keeps the old one beside it.
    @Test func aRewrittenBackupInfoIsCopiedAgainItsOldVersionKeptAndAVanishedObjectIsKept() throws {
        let src = Self.primary(), dst = MemoryStorage()
        try src.put("cnpg/db/base/20261201T000000/backup.info", bytes: Array("status=STARTED\n".utf8))
        _ = try runner(src, dst).run(routes: Self.routes)
        try src.put("cnpg/db/base/20261201T000000/backup.info", bytes: Array("status=DONE\nerror=\n".utf8))
        try src.delete(["cnpg/db/wals/0000000100000000/000000010000000000000001.gz"])
        let mark = dst.log.count
        let r = try runner(src, dst).run(routes: Self.routes)
        let put = puts(dst, since: mark)
        #expect(put.count == 2 && put[1] == "offsite/cnpg/db/base/20261201T000000/backup.info", "\(dst.log.dropFirst(mark))")
        #expect(put[0].hasPrefix("offsite/drctl/changed/primary/offsite/cnpg/db/base/20261201T000000/backup.info@"), "\(put)")
        #expect(dst.contents(put[0]) == Array("status=STARTED\n".utf8), "the old version kept")
        #expect(r.changedAtSource.isEmpty && r.preserved == 1)
        // DONE is final: rewritten once more at the source, it is a change of something written once.
        try src.put("cnpg/db/base/20261201T000000/backup.info", bytes: Array("status=DONE\nend_wal=000000010000000000000099\n".utf8))
        let again = try runner(src, dst).run(routes: Self.routes)
        #expect(again.changedAtSource == ["cnpg/db/base/20261201T000000/backup.info"], "\(again)")
        #expect(dst.contents("offsite/cnpg/db/base/20261201T000000/backup.info") == Array("status=DONE\nerror=\n".utf8))
        #expect(r.onlyOnCopy == 1, "the WAL the primary lost stays on the copy")
        #expect(dst.contents("offsite/cnpg/db/wals/0000000100000000/000000010000000000000001.gz") != nil)
        #expect(deletes(dst).isEmpty, "a copy never deletes")
    }

    @Test func aPrimaryWipedOutLeavesTheCopyWhole() throws {
        let src = Self.primary(), dst = MemoryStorage()
        _ = try runner(src, dst).run(routes: Self.routes)
        let before = dst.keys
        try src.delete(src.keys)
        let r = try runner(src, dst).run(routes: Self.routes)
        #expect(r.copied == 0 && r.onlyOnCopy == 5 && dst.keys == before, "\(r)")
    }

    @Test func anObjectThatChangesWhileItIsCopiedIsCopiedAgain() throws {
        let src = Self.primary(), dst = MemoryStorage()
        let key = "cnpg/db/base/20261201T000000/data.tar.gz"
        let changed = Flag()
        src.fault = { op, k in
            // The first read of the tar: the primary rewrites it right after (a new backup under the same name).
            if op == .get && k == key && changed.setOnce() {
                DispatchQueue.global().sync { _ = try? src.put(key, bytes: Array(repeating: 9, count: 6000)) }
            }
            return nil
        }
        let r = try runner(src, dst).run(routes: Self.routes)
        #expect(r.changedDuringCopy == [key], "\(r)")
        #expect(dst.contents("offsite/" + key) == Array(repeating: 9, count: 6000), "the copy holds the object as it is now")
        let entry = try runner(src, dst).loadState().objects["offsite/" + key]
        #expect(entry?.size == 6000 && entry?.sha256 == sha(Array(repeating: 9, count: 6000)))
    }

    @Test func failuresAreReportedAndTheNextRunCopiesOnlyWhatIsMissing() throws {
        let src = Self.primary(), dst = MemoryStorage()
        let wal = "offsite/cnpg/db/wals/0000000100000000/000000010000000000000001.gz"
        dst.fault = { op, k in op == .put && k == wal ? StorageError.io("the copy's store refused \(k)") : nil }
        let r = try runner(src, dst).run(routes: Self.routes)
        #expect(r.failed.map(\.key) == ["cnpg/db/wals/0000000100000000/000000010000000000000001.gz"] && r.copied == 4 && r.lagSeconds >= 0, "\(r)")
        #expect(try runner(src, dst).loadState().lastSuccess == nil, "a run with failures is no success")
        dst.fault = nil
        let mark = dst.log.count
        let again = try runner(src, dst).run(routes: Self.routes)
        #expect(puts(dst, since: mark) == [wal] && again.failed.isEmpty, "\(dst.log.dropFirst(mark))")
    }

    /// The copy's store down for the whole run: after `giveUpAfter` failures in a row the rest
    /// are not tried (each would be retried in vain), every object is named, and the next run,
    /// with the store back, copies them all.
    @Test func aStoreThatIsDownIsGivenUpOnAndTheNextRunCopiesEverything() throws {
        let src = MemoryStorage(Dictionary(uniqueKeysWithValues: (0..<200).map { ("velero/backups/b/\($0).json", Array("{\"n\":\($0)}".utf8)) }))
        let dst = MemoryStorage()
        dst.fault = { op, k in op == .put && !k.hasSuffix("primary.json") ? StorageError.io("connection refused") : nil }
        var r = runner(src, dst)
        r.giveUpAfter = 10
        let report = try r.run(routes: Self.routes)
        let tried = dst.log.filter { $0.hasPrefix("put offsite/velero/") }.count
        #expect(report.failed.count == 200 && report.copied == 0, "\(report.failed.count)")
        #expect(tried >= 10 && tried <= 10 + r.workers, "only \(tried) objects were tried once the store was seen down")
        #expect(report.failed.contains { $0.error.hasPrefix("not tried: the last 10 objects failed in a row") && $0.error.contains("connection refused") })
        dst.fault = nil
        let again = try r.run(routes: Self.routes)
        #expect(again.copied == 200 && again.failed.isEmpty, "\(again.failed.prefix(3))")
    }

    /// A run killed after its puts but before its record: the next run recognises the objects by
    /// their single-part ETag (the content's MD5) and copies nothing twice.
    @Test func objectsPutButNotRecordedAreRecognisedNotCopiedAgain() throws {
        let src = Self.primary(), dst = MemoryStorage()
        _ = try runner(src, dst).run(routes: Self.routes)
        try dst.delete([Self.stateKey])
        let mark = dst.log.count
        let r = try runner(src, dst).run(routes: Self.routes)
        #expect(r.copied == 0 && puts(dst, since: mark).isEmpty, "\(r)")
        #expect(try runner(src, dst).loadState().objects.count == 5, "recorded now")
    }

    /// Each small object is one read and one put: the read's own ETag is recorded (no HEAD
    /// after), and checkpoints append journal parts instead of writing the whole record, which is
    /// written once at the end, its parts then removed.
    @Test func aSmallObjectIsOneReadAndOnePutAndTheRecordIsWrittenOnce() throws {
        let src = MemoryStorage(Dictionary(uniqueKeysWithValues: (0..<50).map { ("velero/backups/b/\($0).json", Array("{\"n\":\($0)}".utf8)) }))
        let dst = MemoryStorage()
        var r = runner(src, dst)
        r.checkpointInterval = 0   // a part after every object
        let sourceMark = src.log.count
        let report = try r.run(routes: Self.routes)
        #expect(report.copied == 50 && report.failed.isEmpty, "\(report)")
        let reads = src.log.dropFirst(sourceMark).filter { $0.hasPrefix("get velero/") || $0.hasPrefix("head velero/") }
        #expect(reads.count == 50 * 3, "the memory driver reads between two HEADs (it has no versioned GET): \(reads.prefix(6))")
        let objectPuts = dst.log.filter { $0.hasPrefix("put offsite/velero/") }
        #expect(objectPuts.count == 50 && !dst.log.contains { $0.hasPrefix("head offsite/velero/") }, "one put per object, no HEAD on the copy")
        let parts = dst.log.filter { $0.hasPrefix("put " + CopyInspector.journalPrefix(Self.stateKey)) }
        #expect(parts.count >= 2, "checkpoints went to the journal: \(parts.count)")
        #expect(dst.log.filter { $0 == "put " + Self.stateKey }.count == 1, "the whole record written once")
        #expect(dst.keys.filter { $0.hasPrefix(CopyInspector.journalPrefix(Self.stateKey)) }.isEmpty, "its parts removed once in the record")
        #expect(try r.loadState().objects.count == 50)
    }

    /// A run stopped before its end leaves its journal: the next run reads it on top of the
    /// record and copies nothing it holds. A part drctl did not seal, or one put back after its
    /// run was folded into the record, is not read.
    @Test func aStoppedRunsJournalIsReadAndOnlyDrctlsOwnCurrentPartsCount() throws {
        let src = Self.primary(), dst = MemoryStorage()
        var r = runner(src, dst)
        r.checkpointInterval = 0
        // The record's final write fails: the run's journal stays.
        dst.fault = { op, k in op == .put && k == Self.stateKey ? StorageError.io("stopped") : nil }
        let first = try r.run(routes: Self.routes)
        #expect(first.failed.first?.key == Self.stateKey, "\(first.failed)")
        dst.fault = nil
        let journal = dst.keys.filter { $0.hasPrefix(CopyInspector.journalPrefix(Self.stateKey)) }
        #expect(!journal.isEmpty && dst.contents(Self.stateKey) == nil)
        // A key whose plaintext never came from drctl: a forged part naming a damaged object as in place.
        let tar = "offsite/cnpg/db/base/20261201T000000/data.tar.gz"
        var loaded = try r.loadState()
        #expect(loaded.objects.count == 5, "read from the journal alone")
        let mark = dst.log.count
        let again = try r.run(routes: Self.routes)
        #expect(again.copied == 0 && puts(dst, since: mark).isEmpty && again.failed.isEmpty, "\(again)")
        #expect(dst.keys.filter { $0.hasPrefix(CopyInspector.journalPrefix(Self.stateKey)) }.isEmpty)

        // An old part put back after its run was folded in: not read (its entry would say the damaged tar is in place).
        let old = journal[0]
        var part = CopyJournalPart(run: CopyInspector.partRun(old.dropFirst(CopyInspector.journalPrefix(Self.stateKey).count))!, source: src.identity,
                                   objects: [tar: loaded.objects[tar]!])
        try dst.put(tar, bytes: Array(repeating: 0, count: 5000))
        part.objects[tar]!.etag = try dst.head(tar)!.etag
        try dst.put(old, bytes: try RecordSeal.seal(part, kind: RecordKind.copyJournal, name: CopyInspector.journalName(old), keys: Self.ring))
        // And a part of a newer run, unsealed.
        let newer = CopyInspector.journalPrefix(Self.stateKey) + CopyInspector.runName(Date().addingTimeInterval(60)) + "-000000.json"
        try dst.put(newer, bytes: Array(try JSONEncoder().encode(part)))
        loaded = try r.loadState()
        #expect(loaded.objects[tar]?.etag != part.objects[tar]!.etag, "neither part was read")
        let repaired = try r.run(routes: Self.routes)
        #expect(repaired.copied == 1 && repaired.preserved == 1 && dst.contents(tar) == Array(repeating: 7, count: 5000), "\(repaired)")

        // Parts planted by the hundred, named after any later run: a few are looked at, the rest not even read.
        for i in 0..<200 {
            try dst.put(CopyInspector.journalPrefix(Self.stateKey) + "99991231T235959Z.999-zz-\(String(format: "%06d", i)).json", bytes: Array("[0,0,0]".utf8))
        }
        let plantedMark = dst.log.count
        #expect(try r.loadState().objects.count == 5)
        let reads = dst.log.dropFirst(plantedMark).filter { $0.hasPrefix("get " + CopyInspector.journalPrefix(Self.stateKey)) }.count
        #expect(reads <= CopyInspector.journalForgeriesRead, "\(reads) planted parts read")
    }

    /// A listing is a claim: an object listed small and larger when read is copied through the
    /// spool, whole, not cut at the in-memory limit.
    @Test func anObjectListedSmallButLargerWhenReadIsCopiedWhole() throws {
        let src = Self.primary(), dst = MemoryStorage()
        let wal = "cnpg/db/wals/0000000100000000/000000010000000000000001.gz"
        let grown = Flag()
        src.fault = { op, k in
            if op == .get && k == wal && grown.setOnce() { DispatchQueue.global().sync { _ = try? src.put(wal, bytes: Array(repeating: 3, count: 9000)) } }
            return nil
        }
        let r = try runner(src, dst).run(routes: Self.routes)
        #expect(r.failed.isEmpty && dst.contents("offsite/" + wal) == Array(repeating: 3, count: 9000), "\(r)")
        #expect(r.changedDuringCopy == [wal])
    }

    /// The record lives in the copy's bucket, where others may write: a forged or foreign record
    /// can make drctl copy more, never delete, and never skip an object whose copy differs.
    @Test func aForgedRecordNeitherHidesADifferenceNorDeletes() throws {
        let src = Self.primary(), dst = MemoryStorage()
        _ = try runner(src, dst).run(routes: Self.routes)
        let tar = "offsite/cnpg/db/base/20261201T000000/data.tar.gz"
        try dst.put(tar, bytes: Array(repeating: 0, count: 10))   // the copy damaged; the record still says it is fine
        var mark = dst.log.count
        _ = try runner(src, dst).run(routes: Self.routes)
        let put = puts(dst, since: mark)
        #expect(put.last == tar && dst.contents(tar) == Array(repeating: 7, count: 5000), "\(put)")
        #expect(put.count == 2 && dst.contents(put[0]) == Array(repeating: 0, count: 10), "what was on the copy is kept beside: \(put)")
        for forged in [Array("not json".utf8), Array(#"{"version":1,"source":"s3://someone-else","objects":{}}"#.utf8)] {
            try dst.put(Self.stateKey, bytes: forged)
            mark = dst.log.count
            let r = try runner(src, dst).run(routes: Self.routes)
            #expect(r.copied == 0 && r.upToDate == 5 && deletes(dst, since: mark).isEmpty, "\(r)")
        }
    }

    /// Base backups and WAL are written once: overwritten at the primary (one byte each), the
    /// copy keeps every original, puts the new versions beside them once, and names them in
    /// every run until the primary is put right.
    @Test func anOverwriteAtThePrimaryNeverReachesTheCopy() throws {
        let src = Self.primary(), dst = MemoryStorage()
        _ = try runner(src, dst).run(routes: Self.routes)
        let before = Dictionary(uniqueKeysWithValues: dst.keys.map { ($0, dst.contents($0)!) })
        let writeOnce = ["cnpg/db/base/20261201T000000/data.tar.gz", "cnpg/db/wals/0000000100000000/000000010000000000000001.gz", "drctl/evidence/app/1.json"]
        for k in writeOnce { try src.put(k, bytes: [0]) }
        let r = try runner(src, dst).run(routes: Self.routes)
        #expect(r.changedAtSource == writeOnce.sorted(), "\(r)")
        for (k, v) in before where !k.hasSuffix("primary.json") { #expect(dst.contents(k) == v, "\(k) kept as copied") }
        let aside = dst.keys.filter { $0.hasPrefix("offsite/drctl/changed/primary/") }
        #expect(aside.count == 3 && aside.allSatisfy { dst.contents($0) == [0] }, "\(aside)")
        #expect(try runner(src, dst).loadState().lastSuccess != nil, "the first run's success stays the last")
        // The next run puts nothing more and still names them.
        let mark = dst.log.count
        let again = try runner(src, dst).run(routes: Self.routes)
        #expect(again.changedAtSource == writeOnce.sorted() && puts(dst, since: mark).isEmpty, "\(dst.log.dropFirst(mark))")
        // Put right at the primary: in place again.
        for k in writeOnce { try src.put(k, bytes: Self.primary().contents(k)!) }
        let fixed = try runner(src, dst).run(routes: Self.routes)
        #expect(fixed.changedAtSource.isEmpty && fixed.copied == 0, "\(fixed)")
    }

    /// A copy on a disk has no ETags: a flipped bit, or a same-size replacement, is seen only by
    /// reading the content back (`drctl copy --verify`), and then copied again from the source,
    /// the damaged file kept beside it.
    @Test func aBitFlipOnADiskCopyIsFoundByVerifyAndRepaired() throws {
        let dir = NSTemporaryDirectory() + "drctl-verify-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let src = Self.primary(), dst = FileStorage(root: dir)
        var r = CopyRunner(source: src, target: dst, stateKey: Self.stateKey)
        r.keys = Self.ring
        r.inMemoryLimit = 4000
        _ = try r.run(routes: Self.routes)
        let wal = "offsite/cnpg/db/wals/0000000100000000/000000010000000000000001.gz"
        var bytes = try dst.read(wal)
        bytes[100] ^= 0x04
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + wal))
        #expect(try r.run(routes: Self.routes).copied == 0, "by size and record alone the flip is not seen")
        let (checked, damaged) = try r.verify(routes: Self.routes)
        #expect(checked == 5 && damaged.map(\.key) == [wal] && damaged[0].error.contains("SHA-256"), "\(damaged)")
        let repaired = try r.run(routes: Self.routes)
        let now = try dst.read(wal)
        #expect(repaired.copied == 1 && repaired.preserved == 1 && now == src.contents("cnpg/db/wals/0000000100000000/000000010000000000000001.gz"), "\(repaired)")
        #expect(try r.verify(routes: Self.routes).damaged.isEmpty)
    }

    /// A record drctl did not seal vouches for nothing: an unsigned copy of the real record that
    /// claims a damaged object is in place does not hide it.
    @Test func anUnsealedRecordVouchesForNothing() throws {
        let src = Self.primary(), dst = MemoryStorage()
        _ = try runner(src, dst).run(routes: Self.routes)
        var state = try runner(src, dst).loadState()
        let tar = "offsite/cnpg/db/base/20261201T000000/data.tar.gz"
        try dst.put(tar, bytes: Array(repeating: 1, count: 5000))   // same size, other bytes
        state.objects[tar]?.etag = ""   // "matches any object of the right size"
        try dst.put(Self.stateKey, bytes: Array(try JSONEncoder().encode(state)))
        let r = try runner(src, dst).run(routes: Self.routes)
        #expect(dst.contents(tar) == Array(repeating: 7, count: 5000) && r.copied == 1, "\(r)")
        var wrongKey = runner(src, dst)
        wrongKey.keys = RecordKeyring(keys: [RecordKey(id: "test", secret: [UInt8](repeating: 6, count: 32))])
        #expect(try wrongKey.loadState().objects.isEmpty, "sealed with another key: not trusted")
    }

    @Test func theSpoolIsPrivateAndGoesAway() throws {
        let base = NSTemporaryDirectory() + "drctl-spool-test-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        var r = runner(Self.primary(), MemoryStorage())
        r.spoolBase = base
        _ = try r.run(routes: Self.routes)
        #expect(try FileManager.default.contentsOfDirectory(atPath: base).isEmpty)
    }

    @Test func lagIsTheOldestUncopiedObjectsWait() {
        let now = Date()
        let src = [StoredObject(key: "cnpg/a", size: 1, etag: "e1", lastModified: now.addingTimeInterval(-3600)),
                   StoredObject(key: "cnpg/b", size: 1, etag: "e2", lastModified: now.addingTimeInterval(-60))]
        let plan = CopyPlanner.plan(routes: [CopyRoute(from: "cnpg", to: "cnpg")], source: src, target: [], state: CopyState(source: "x"), now: now)
        #expect(plan.copy.count == 2 && abs(plan.lag(now: now) - 3600) < 1)
        #expect(CopyPlanner.plan(routes: [CopyRoute(from: "cnpg", to: "cnpg")], source: [], target: [], state: CopyState(source: "x"), now: now).lag(now: now) == 0)
    }
}

func sha(_ b: [UInt8]) -> String {
    var d = Hashing.Digest(.sha256)
    d.update(b)
    return d.finish().map { String(format: "%02x", $0) }.joined()
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var set = false
    func setOnce() -> Bool { lock.withLock { if set { return false }; set = true; return true } }
}

/// Encrypted copies between in-memory stores: ciphertext on the copy, plaintext through
/// DecryptedCopy with the plaintext's sizes, a change of recipients copies again.
struct EncryptedCopyTests {
    /// A copy encrypted to `recipient`, its 5000-byte tar through the spool.
    static func runner(_ src: MemoryStorage, _ dst: MemoryStorage, to recipient: Age.Recipient) -> CopyRunner {
        var r = CopyRunner(source: src, target: dst, stateKey: CopyTests.stateKey)
        r.keys = CopyTests.ring
        r.recipients = [recipient]
        r.inMemoryLimit = 4000
        return r
    }

    @Test func theCopyHoldsAgeAndReadsBackPlain() throws {
        let (id, _) = Age.Identity.generate()
        let src = CopyTests.primary(), dst = MemoryStorage()
        var r = Self.runner(src, dst, to: id.recipient)
        let report = try r.run(routes: CopyTests.routes)
        #expect(report.copied == 5)
        let tar = "cnpg/db/base/20261201T000000/data.tar.gz"
        #expect(dst.contents("offsite/" + tar)?.starts(with: Array("age-encryption.org/v1\n".utf8)) == true)
        let state = try r.loadState()
        let view = DecryptedCopy(dst, identities: [id], records: [state])
        #expect(try view.read("offsite/" + tar) == src.contents(tar))
        #expect(try view.head("offsite/" + tar)?.size == 5000, "listed with the plaintext's size")
        var ranged: [UInt8] = []
        try view.get("offsite/" + tar, range: 4990...4999) { ranged += $0 }
        #expect(ranged == Array(src.contents(tar)!.suffix(10)))
        // A re-run with the same recipients copies nothing; new recipients re-encrypt everything.
        #expect(try r.run(routes: CopyTests.routes).copied == 0)
        let (other, _) = Age.Identity.generate()
        r.recipients = [other.recipient]
        #expect(try r.run(routes: CopyTests.routes).copied == 5)
        #expect(throws: StorageError.self) { try DecryptedCopy(dst, identities: [id], records: [try r.loadState()]).read("offsite/" + tar) }
    }

    /// Anyone can encrypt to a copy's public recipient: read as drctl reads a copy it encrypted,
    /// an object the sealed record does not list is not there, and a recorded one replaced by a
    /// valid ciphertext of other bytes fails its read.
    @Test func anEncryptedCopyHandsOutOnlyWhatItsSealedRecordLists() throws {
        let (id, _) = Age.Identity.generate()
        let src = CopyTests.primary(), dst = MemoryStorage()
        _ = try Self.runner(src, dst, to: id.recipient).run(routes: CopyTests.routes)
        let records = try DecryptedCopy.records(dst, drctlRoot: "offsite/drctl", keys: CopyTests.ring)
        #expect(records.count == 1)
        let planted = "offsite/cnpg/db/base/20261202T000000/backup.info"
        try dst.put(planted, bytes: try Age.encrypt(Array("status=DONE\n".utf8), to: [id.recipient]))
        let info = "offsite/cnpg/db/base/20261201T000000/backup.info"
        var view = DecryptedCopy(dst, identities: [id], records: records)
        view.onlyRecorded = true
        view.ownPrefix = "offsite/drctl"
        #expect(try view.listAll(prefix: "offsite/cnpg/").map(\.key).contains(planted) == false)
        #expect(try view.head(planted) == nil)
        #expect(throws: StorageError.self) { try view.read(planted) }
        #expect(try view.read(info) == src.contents("cnpg/db/base/20261201T000000/backup.info"))
        try dst.put(info, bytes: try Age.encrypt(Array("status=DONE\nforged=1\n".utf8), to: [id.recipient]))
        #expect(throws: StorageError.self) { try view.read(info) }
        // A record drctl did not seal is no record.
        try dst.put(CopyTests.stateKey, bytes: Array(try JSONEncoder().encode(records[0])))
        #expect(try DecryptedCopy.records(dst, drctlRoot: "offsite/drctl", keys: CopyTests.ring).isEmpty)
    }

    /// `--reencrypt`: objects the source no longer has are rewritten for the new recipients from
    /// the copy itself; the record stays in step (a copy afterwards copies nothing); a forgery
    /// encrypted to the old public recipient is named and left alone, never re-sealed.
    @Test func reencryptRewritesWhatOnlyTheCopyHasAndRefusesAForgery() throws {
        let (old, _) = Age.Identity.generate(), (new, _) = Age.Identity.generate()
        let src = CopyTests.primary(), dst = MemoryStorage()
        var r = Self.runner(src, dst, to: old.recipient)
        _ = try r.run(routes: CopyTests.routes)
        let tar = "cnpg/db/base/20261201T000000/data.tar.gz", info = "cnpg/db/base/20261201T000000/backup.info"
        let plain = src.contents(tar)!
        try src.delete([tar])   // only the copy has it now
        // Someone who can write the copy replaces backup.info with their own, validly encrypted to the public recipient.
        try dst.put("offsite/" + info, bytes: try Age.encrypt(Array("status=DONE\nforged=1\n".utf8), to: [old.recipient]))

        r.recipients = [new.recipient]
        let report = try r.reencrypt(routes: CopyTests.routes, identities: [old])
        #expect(report.copied == 4 && report.failed.map(\.key) == ["offsite/" + info], "\(report)")
        #expect(report.failed.first?.error.contains("not the object drctl copied") == true, "caught by its ETag before anything is read")
        let state = try r.loadState()
        #expect(try DecryptedCopy(dst, identities: [new], records: [state]).read("offsite/" + tar) == plain, "re-encrypted from the copy itself")
        #expect(throws: StorageError.self) { try DecryptedCopy(dst, identities: [old], records: [state]).read("offsite/" + tar) }
        #expect(state.objects["offsite/" + tar]?.recipients == [new.recipient.description])
        // A copy now: the forgery is replaced from the source, nothing else is copied.
        let after = try r.run(routes: CopyTests.routes)
        #expect(after.copied == 1, "\(after)")
        #expect(try DecryptedCopy(dst, identities: [new], records: [try r.loadState()]).read("offsite/" + info) == src.contents(info))
    }
}

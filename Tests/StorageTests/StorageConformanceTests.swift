import Foundation
import Support
import Testing
import Catalog
import Layout
@testable import Storage

/// Every driver behaves as S3 does where the callers depend on it: key order, prefixes and
/// delimiters, start-after, ranges, missing objects, whole writes; the file driver refuses keys
/// that would leave its root. The same checks run against each driver.
@Suite struct StorageConformanceTests {
    static func drivers() throws -> [(String, any StorageWriter, () -> Void)] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-storage-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return [("memory", MemoryStorage(), {}), ("file", FileStorage(root: dir), { try? FileManager.default.removeItem(atPath: dir) })]
    }

    static let keys = ["cnpg/app/base/20261201T040000/backup.info", "cnpg/app/base/20261201T040000/data.tar",
                       "cnpg/app/wals/0000000100000000/000000010000000000000001.gz", "cnpg/app/wals/0000000100000000/000000010000000000000002.gz",
                       "cnpg/app/wals/00000002.history", "cnpg/other/base/x/backup.info", "velero/backups/b/velero-backup.json", "z"]

    @Test func listingReadingAndWritingAgreeAcrossDrivers() throws {
        for (name, s, cleanup) in try Self.drivers() {
            defer { cleanup() }
            for k in Self.keys.reversed() { try s.put(k, bytes: Array("content of \(k)".utf8)) }
            #expect(try s.listAll(prefix: "").map(\.key) == Self.keys, "\(name): every key, in byte order")
            #expect(try s.listAll(prefix: "cnpg/app/wals/").map(\.key) == Array(Self.keys[2...4]), "\(name)")
            #expect(try s.listAll(prefix: "cnpg/app/wa").count == 3, "\(name): a prefix need not end at a /")
            var prefixes: [String] = [], objects: [String] = []
            try s.list(prefix: "cnpg/", delimiter: "/", startAfter: nil) { o, p in objects += o.map(\.key); prefixes += p }
            #expect(prefixes == ["cnpg/app/", "cnpg/other/"] && objects.isEmpty, "\(name): \(prefixes) \(objects)")
            prefixes = []; objects = []
            try s.list(prefix: "cnpg/app/wals/", delimiter: "/", startAfter: nil) { o, p in objects += o.map(\.key); prefixes += p }
            #expect(prefixes == ["cnpg/app/wals/0000000100000000/"] && objects == ["cnpg/app/wals/00000002.history"], "\(name): \(prefixes) \(objects)")
            objects = []
            try s.list(prefix: "cnpg/app/wals/", delimiter: nil, startAfter: Self.keys[2]) { o, _ in objects += o.map(\.key) }
            #expect(objects == Array(Self.keys[3...4]), "\(name): start-after is exclusive: \(objects)")

            #expect(try s.head(Self.keys[0])?.size == Int64("content of \(Self.keys[0])".utf8.count), "\(name)")
            #expect(try s.head("cnpg/nothing") == nil, "\(name)")
            #expect(try String(decoding: s.read("z"), as: UTF8.self) == "content of z", "\(name)")
            var part: [UInt8] = []
            try s.get("z", range: 3...6) { part += $0 }
            #expect(String(decoding: part, as: UTF8.self) == "tent", "\(name): ranges are inclusive")
            #expect(throws: StorageError.notFound("missing"), "\(name)") { try s.read("missing") }

            try s.put("z", bytes: Array("replaced".utf8))
            #expect(try String(decoding: s.read("z"), as: UTF8.self) == "replaced", "\(name): a put replaces whole")
            try s.delete(["z", "never-there"])
            #expect(try s.head("z") == nil, "\(name): deleted; a missing key is no error")
        }
    }

    /// A conditional create is one step: of two writers, one creates; what is there stays.
    @Test func aConditionalCreateNeverReplaces() throws {
        for (name, s, cleanup) in try Self.drivers() {
            defer { cleanup() }
            #expect(try s.create("slots/j/1.json", bytes: [1], contentType: nil) == true, "\(name)")
            #expect(try s.create("slots/j/1.json", bytes: [2], contentType: nil) == false, "\(name)")
            #expect(try s.read("slots/j/1.json") == [1], "\(name): the first stays")
            let results = try Parallel.map(Array(0..<8), threads: 8) { i in try s.create("slots/j/2.json", bytes: [UInt8(i)], contentType: nil) }
            #expect(results.filter { $0 == true }.count == 1, "\(name): one of eight racing writers creates: \(results)")
        }
    }

    @Test func theFileDriverRefusesKeysThatLeaveItsRoot() throws {
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-storage-\(UUID().uuidString)").path
        let root = parent + "/bucket"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let s = FileStorage(root: root)
        for key in ["../outside", "a/../../outside", "/etc/passwd", "a//b", "./a", "a/./b", "a\0b", ""] {
            #expect(throws: StorageError.self, "\(key.debugDescription)") { try s.put(key, bytes: [1]) }
            #expect(throws: StorageError.self, "\(key.debugDescription)") { try s.read(key) }
        }
        #expect(!FileManager.default.fileExists(atPath: parent + "/outside"))
        // A link planted in the tree is neither listed nor followed.
        try "secret".write(toFile: parent + "/secret", atomically: true, encoding: .utf8)
        symlink(parent + "/secret", root + "/link")
        #expect(try s.listAll(prefix: "").isEmpty)
        #expect(throws: StorageError.self) { try s.read("link") }

        // A linked directory anywhere on the path (rsync -a keeps links): never followed, for
        // reading, listing, writing or deleting.
        let outside = parent + "/outside-dir"
        try FileManager.default.createDirectory(atPath: outside + "/db", withIntermediateDirectories: true)
        try "keep".write(toFile: outside + "/db/x", atomically: true, encoding: .utf8)
        symlink(outside, root + "/cnpg")
        #expect(try s.listAll(prefix: "cnpg/").isEmpty && s.listAll(prefix: "cnpg/db/").isEmpty)
        #expect(try s.head("cnpg/db/x") == nil)
        #expect(throws: StorageError.notFound("cnpg/db/x")) { try s.read("cnpg/db/x") }
        #expect(throws: StorageError.self) { try s.put("cnpg/db/new", bytes: [1]) }
        #expect(!FileManager.default.fileExists(atPath: outside + "/db/new"))
        try s.delete(["cnpg/db/x"])
        #expect(FileManager.default.fileExists(atPath: outside + "/db/x"), "a deletion never reaches through a link")
        #expect(throws: StorageError.self) { try s.listAll(prefix: "../") }
        #expect(throws: StorageError.notFound(parent + "/no-such-copy")) { try FileStorage(root: parent + "/no-such-copy").listAll(prefix: "") }
    }

    @Test func aBucketOnDiskIsScannedLikeTheBucket() throws {
        // The same barman layout, in memory and on disk, scans the same.
        let info = """
            backup_label=None
            begin_time=Tue Dec  1 04:00:00 2026
            begin_wal=000000010000000000000001
            begin_xlog=0/1000028
            end_time=Tue Dec  1 04:00:05 2026
            end_wal=000000010000000000000001
            end_xlog=0/1000100
            status=DONE
            timeline=1
            version=150010
            systemid=7000000000000000001
            """
        for (name, s, cleanup) in try Self.drivers() {
            defer { cleanup() }
            try s.put("cnpg/app/base/20261201T040000/backup.info", bytes: Array(info.utf8))
            try s.put("cnpg/app/base/20261201T040000/data.tar", bytes: [0])
            try s.put("cnpg/app/wals/0000000100000000/000000010000000000000001", bytes: [0])
            try s.put("cnpg/app/wals/0000000100000000/000000010000000000000002", bytes: [0])
            let reader = s
            #expect(try BarmanScanner.servers(reader, layout: BarmanLayout(root: "cnpg")) == ["app"], "\(name)")
            let scan = try BarmanScanner.scan(reader, layout: BarmanLayout(root: "cnpg"), server: "app")
            #expect(scan.backups.count == 1 && scan.backups[0].status == "DONE" && scan.walSegments == 2, "\(name): \(scan)")
        }
    }

    @Test func aCopyKeepsEachObjectsTime() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-mtime-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = FileStorage(root: dir), when = Date(timeIntervalSince1970: 1_700_000_000.25)
        try s.put("a/b", bytes: [1], lastModified: when)
        #expect(try abs(s.head("a/b")!.lastModified!.timeIntervalSince(when)) < 0.001)
        #expect(try abs(s.listAll(prefix: "a/").first!.lastModified!.timeIntervalSince(when)) < 0.001)
    }

    @Test func faultsInjectedIntoTheMemoryDriverReachTheCaller() throws {
        struct Boom: Error {}
        let s = MemoryStorage(["a/1": [1], "a/2": [2]])
        s.fault = { op, key in op == .get && key == "a/2" ? Boom() : nil }
        #expect(try s.read("a/1") == [1])
        #expect(throws: Boom.self) { try s.read("a/2") }
        #expect(s.log == ["get a/1", "get a/2"])
    }

    @Test func storageURLs() throws {
        #expect(try StorageURL.parse("s3://backups/cnpg") == .s3(bucket: "backups", key: "cnpg"))
        #expect(try StorageURL.parse("file:///srv/copy/") == .file(root: "/srv/copy", key: ""))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-url-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/cnpg", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        FileManager.default.createFile(atPath: dir + "/" + FileStorage.marker, contents: nil)
        #expect(try StorageURL.parse("file://\(dir)/cnpg") == .file(root: dir, key: "cnpg"), "the marked directory is the bucket")
        #expect(throws: StorageError.self) { try StorageURL.parse("file://relative/path") }
        #expect(throws: StorageError.self) { try StorageURL.parse("https://x") }
        #expect(throws: (any Error).self, "bucket names as S3 has them") { try StorageURL.parse("s3://Not_A_Bucket/x") }
    }
}

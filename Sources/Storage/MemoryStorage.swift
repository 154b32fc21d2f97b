import Foundation
import Hashing
import Support

/// A store in memory, for unit tests: S3's listing order and delimiter rules, and a hook that
/// makes any operation fail (or corrupt what it returns) to test what a fault does.
public final class MemoryStorage: StorageWriter, @unchecked Sendable {
    public enum Operation: String, Sendable { case list, head, get, put, delete, bucketLock }
    private let lock = NSLock()
    private var objects: [String: (bytes: [UInt8], modified: Date)] = [:]
    private var locks: [String: VersionLock] = [:]
    /// What `bucketLock()` answers; set it to test Object Lock handling (nil: access denied).
    public var objectLock: BucketLock? = BucketLock(enabled: false)
    /// Called before each operation with its key (the prefix for `list`): an error it returns is
    /// thrown instead of doing it.
    public var fault: (@Sendable (Operation, String) -> Error?)?
    /// Every operation done, in order (`get a/b`, `put x`), for tests that count requests.
    public private(set) var log: [String] = []
    public let location = "memory:"

    /// Closed: puts and deletions are refused (as every driver does once `Fence.process` closes).
    public var fence: Fence = .process

    public init(_ initial: [String: [UInt8]] = [:], modified: Date = Date()) {
        for (k, v) in initial { objects[k] = (v, Self.storeTime(modified)) }
    }

    /// Times as S3 keeps them: whole milliseconds (LastModified in a listing).
    static func storeTime(_ d: Date) -> Date { Date(timeIntervalSince1970: (d.timeIntervalSince1970 * 1000).rounded(.down) / 1000) }

    func begin(_ op: Operation, _ key: String) throws {
        let hook = lock.withLock { () -> (@Sendable (Operation, String) -> Error?)? in
            log.append("\(op.rawValue) \(key)")
            return fault
        }
        if let error = hook?(op, key) { throw error }
    }

    public var keys: [String] { lock.withLock { objects.keys.sorted() } }
    public func contents(_ key: String) -> [UInt8]? { lock.withLock { objects[key]?.bytes } }

    /// Locks a key's object as S3 Object Lock would: HEAD reports it, a delete is refused
    /// with AccessDenied while it holds. Versions are the key's one current version ("v1").
    public func setLock(_ key: String, _ l: VersionLock?) { lock.withLock { locks[key] = l } }

    func stored(_ key: String, _ o: (bytes: [UInt8], modified: Date), head: Bool) -> StoredObject {
        StoredObject(key: key, size: Int64(o.bytes.count), etag: Self.etag(o.bytes), lastModified: o.modified,
                     versionID: head && objectLock?.enabled == true ? "v1" : nil, lock: head ? locks[key] : nil)
    }

    public func list(prefix: String, delimiter: String?, startAfter: String?, _ page: ([StoredObject], [String]) throws -> Void) throws {
        try begin(.list, prefix)
        let snapshot = lock.withLock { objects }
        var out: [StoredObject] = []
        var prefixes = Set<String>()
        for key in snapshot.keys.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) where key.hasPrefix(prefix) {
            if let startAfter, !(key > startAfter) { continue }
            if let delimiter, let r = key.dropFirst(prefix.count).range(of: delimiter) {
                prefixes.insert(String(key[..<r.upperBound]))
                continue
            }
            out.append(stored(key, snapshot[key]!, head: false))
        }
        try page(out, prefixes.sorted())
    }

    public func head(_ key: String) throws -> StoredObject? {
        try begin(.head, key)
        return lock.withLock { objects[key].map { stored(key, $0, head: true) } }
    }

    public func get(_ key: String, range: ClosedRange<Int64>?, _ chunk: (UnsafeRawBufferPointer) throws -> Void) throws {
        try begin(.get, key)
        guard let bytes = lock.withLock({ objects[key]?.bytes }) else { throw StorageError.notFound(key) }
        let lo = Int(range?.lowerBound ?? 0), hi = min(bytes.count, Int(range.map { $0.upperBound + 1 } ?? Int64(bytes.count)))
        guard lo < hi else { return }
        try bytes[lo..<hi].withUnsafeBytes { try chunk($0) }
    }

    @discardableResult
    public func put(_ key: String, bytes: [UInt8], contentType: String?) throws -> StoredObject {
        try fence.check("put \(location)/\(key)")
        try begin(.put, key)
        let now = Self.storeTime(Date())
        lock.withLock { objects[key] = (bytes, now) }
        return StoredObject(key: key, size: Int64(bytes.count), etag: Self.etag(bytes), lastModified: now)
    }

    public func create(_ key: String, bytes: [UInt8], contentType: String?) throws -> Bool? {
        try fence.check("put \(location)/\(key)")
        try begin(.put, key)
        let now = Self.storeTime(Date())
        return lock.withLock {
            guard objects[key] == nil else { return false }
            objects[key] = (bytes, now)
            return true
        }
    }

    public func delete(versions: [StoredVersion]) throws -> [DeleteRefusal] {
        try fence.check("delete in \(location)")
        var refused: [DeleteRefusal] = []
        for v in versions {
            try begin(.delete, v.key)
            lock.withLock {
                if let l = locks[v.key], l.isLocked(at: Date()) {
                    // S3: a locked version refuses, and a delete without a version on a versioned
                    // bucket only hides it behind a marker; here both keep the data.
                    refused.append(DeleteRefusal(key: v.key, code: "AccessDenied", message: "object is locked"))
                } else {
                    objects.removeValue(forKey: v.key)
                    locks.removeValue(forKey: v.key)
                }
            }
        }
        return refused
    }

    public func bucketLock() throws -> BucketLock {
        try begin(.bucketLock, "")
        guard let l = lock.withLock({ objectLock }) else { throw StorageError.accessDenied("memory: no right to read the Object Lock configuration") }
        return l
    }

    /// S3's ETag of an object put whole: the hex MD5 of its content.
    static func etag(_ bytes: [UInt8]) -> String { Hash.md5(bytes).hex }
}

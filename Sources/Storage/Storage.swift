import Foundation
import Support

/// One object of a store, whatever the store is.
public struct StoredObject: Sendable, Equatable {
    public var key: String
    public var size: Int64
    /// The store's entity tag, without quotes; empty when it has none (a file).
    public var etag: String
    public var lastModified: Date?
    /// HEAD only: the version (on a versioned bucket) and its Object Lock, if any.
    public var versionID: String?
    public var lock: VersionLock?
    public init(key: String, size: Int64, etag: String = "", lastModified: Date? = nil, versionID: String? = nil, lock: VersionLock? = nil) {
        self.key = key; self.size = size; self.etag = etag; self.lastModified = lastModified
        self.versionID = versionID; self.lock = lock
    }
}

/// The lock on one object version (S3 Object Lock): the store refuses to delete it while it holds.
public struct VersionLock: Sendable, Codable, Equatable {
    public var mode: String?
    public var retainUntil: Date?
    public var legalHold: Bool
    public init(mode: String?, retainUntil: Date?, legalHold: Bool) {
        self.mode = mode; self.retainUntil = retainUntil; self.legalHold = legalHold
    }
    public func isLocked(at now: Date) -> Bool { legalHold || (retainUntil.map { $0 > now } ?? false) }
}

/// A store's Object Lock configuration. Lock can only be enabled when a bucket is created (it
/// turns versioning on); the default retention then applies to every object written after.
public struct BucketLock: Sendable, Codable, Equatable {
    public var enabled: Bool
    /// The default retention's mode (GOVERNANCE or COMPLIANCE), if there is one.
    public var mode: String?
    /// The default retention in seconds (a year counted as 365 days, as S3 does).
    public var defaultRetentionSeconds: Int?
    public init(enabled: Bool, mode: String?, defaultRetentionSeconds: Int?) {
        self.enabled = enabled; self.mode = mode; self.defaultRetentionSeconds = defaultRetentionSeconds
    }

    /// As S3 states a default retention: in days or in years (of 365 days).
    public init(enabled: Bool, mode: String? = nil, days: Int? = nil, years: Int? = nil) {
        self.init(enabled: enabled, mode: mode, defaultRetentionSeconds: days.map { $0 * 86400 } ?? years.map { $0 * 365 * 86400 })
    }

    public var description: String {
        guard enabled else { return "not enabled" }
        guard let mode, let seconds = defaultRetentionSeconds else { return "enabled, no default retention" }
        return "enabled, default retention \(mode) \(seconds / 86400)d"
    }
}

/// One version to delete: a key, and the version when the store keeps versions.
public struct StoredVersion: Sendable, Hashable {
    public var key: String
    public var versionID: String?
    public init(key: String, versionID: String? = nil) { self.key = key; self.versionID = versionID }
}

/// A key the store did not delete, with its reason (S3's error code: AccessDenied for a locked version).
public struct DeleteRefusal: Sendable, Equatable, CustomStringConvertible {
    public var key: String
    public var code: String
    public var message: String
    public init(key: String, code: String, message: String) { self.key = key; self.code = code; self.message = message }
    public var description: String { "\(key): \(code)\(message.isEmpty ? "" : " \(message)")" }
}

public enum StorageError: Error, CustomStringConvertible, Equatable {
    case notFound(String)
    /// The store refused (S3 403): the credentials may not do this.
    case accessDenied(String)
    /// A key no store of this kind can hold as given (`..`, an empty segment, a NUL): refused
    /// rather than mapped somewhere else.
    case invalidKey(String, String)
    case io(String)

    public var description: String {
        switch self {
        case .notFound(let k): return "\(k): no such object"
        case .accessDenied(let m): return m
        case .invalidKey(let k, let why): return "'\(k)' is not a key this store can hold: \(why)"
        case .io(let m): return m
        }
    }
}

/// `fetch` of an object larger than its limit: what a listing said about its size no longer holds.
public struct ObjectTooLarge: Error, CustomStringConvertible {
    public var key: String
    public var limit: Int
    public var description: String { "\(key) is larger than \(limit) bytes" }
}

/// The read side of a store, scoped to one bucket (or directory): what scanners, sync, restore
/// and WAL fetch need. Keys are the bucket's, with `/` as the only separator.
public protocol StorageReader: Sendable {
    /// Where it is, for messages: `s3://bucket`, `file:///path`, `memory:`.
    var location: String { get }
    /// The catalog's name for it: unique across endpoints (S3: endpoint and bucket).
    var identity: String { get }
    /// The bucket's name (a directory store: its root), as records made in it name it.
    var bucketName: String { get }
    /// Objects under `prefix` in key order, in pages; with `delimiter`, the common prefixes too.
    func list(prefix: String, delimiter: String?, startAfter: String?, _ page: ([StoredObject], [String]) throws -> Void) throws
    /// nil when there is no such object.
    func head(_ key: String) throws -> StoredObject?
    /// The object's bytes (or `range` of them, inclusive) in chunks; `StorageError.notFound` if none.
    func get(_ key: String, range: ClosedRange<Int64>?, _ chunk: (UnsafeRawBufferPointer) throws -> Void) throws
    /// The store's Object Lock configuration (`enabled: false` for stores without it);
    /// `StorageError.accessDenied` when the credentials may not read it.
    func bucketLock() throws -> BucketLock
    /// The object into a new file at `path` (0600, synced), and the object as it was read (its
    /// ETag that of the bytes written, which may be newer than a listing's).
    func download(_ key: String, to path: String) throws -> StoredObject
    /// A small object whole (refused beyond `limit`), and the object as read: its ETag (or size
    /// and time) that of these bytes, which may be newer than a listing's.
    func fetch(_ key: String, limit: Int) throws -> (bytes: [UInt8], object: StoredObject)
}

/// The write side: what evidence upload, prune and copies need.
public protocol StorageWriter: StorageReader {
    /// Stores `bytes` under `key`, whole or not at all (`contentType` where the store keeps one).
    @discardableResult func put(_ key: String, bytes: [UInt8], contentType: String?) throws -> StoredObject
    /// Stores the file at `path` under `key`, whole or not at all, streamed (large objects never sit
    /// in memory); `lastModified` is kept where the store can keep it (a directory).
    @discardableResult func put(_ key: String, file path: String, lastModified: Date?) throws -> StoredObject
    /// Deletes each version (the current one where no version is given; a missing one is not
    /// an error, as in S3) and returns what was not deleted.
    func delete(versions: [StoredVersion]) throws -> [DeleteRefusal]
    /// Stores `bytes` under `key` only when nothing is there, in one step the store decides
    /// (S3's `If-None-Match: *`): true when created, false when something was there; nil when
    /// the store does not honour it (the caller then writes and reads back).
    func create(_ key: String, bytes: [UInt8], contentType: String?) throws -> Bool?
}

extension StorageWriter {
    /// A store that cannot create conditionally (or a view over one) says so.
    public func create(_ key: String, bytes: [UInt8], contentType: String?) throws -> Bool? { nil }
}

extension StorageWriter {
    @discardableResult public func put(_ key: String, bytes: [UInt8]) throws -> StoredObject { try put(key, bytes: bytes, contentType: nil) }

    /// Deletes each key; any failure is an error.
    public func delete(_ keys: [String]) throws {
        if let f = try delete(versions: keys.map { StoredVersion(key: $0) }).first { throw StorageError.io("\(location)/\(f)") }
    }
}

extension StorageWriter {
    /// Reads the file whole: for stores that hold objects in memory.
    @discardableResult
    public func put(_ key: String, file path: String, lastModified: Date?) throws -> StoredObject {
        guard let data = FileManager.default.contents(atPath: path) else { throw StorageError.io("cannot read \(path)") }
        return try put(key, bytes: Array(data), contentType: nil)
    }
}

extension StorageReader {
    public var identity: String { location }
    public var bucketName: String { location }

    /// Streams `get` into the file (created new, 0600) and syncs it. The object is looked at
    /// before and after: one that changed in between is read again (three tries), so what is
    /// returned describes the bytes written.
    public func download(_ key: String, to path: String) throws -> StoredObject {
        try consistently(key) {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw StorageError.io("cannot create \(path): \(String(cString: strerror(errno)))") }
            var size: Int64 = 0
            do {
                try get(key, range: nil) { chunk in
                    try writeAll(fd, chunk, path: path)
                    size += Int64(chunk.count)
                }
            } catch {
                close(fd)
                throw error
            }
            guard fsync(fd) == 0, close(fd) == 0 else { throw StorageError.io("\(path): \(String(cString: strerror(errno)))") }
            return ((), size)
        }.object
    }

    /// The object whole, with the object as read (`consistently`).
    public func fetch(_ key: String, limit: Int) throws -> (bytes: [UInt8], object: StoredObject) {
        try consistently(key) {
            var out: [UInt8] = []
            try get(key, range: nil) { chunk in
                guard out.count + chunk.count <= limit else { throw ObjectTooLarge(key: key, limit: limit) }
                out += chunk
            }
            return (out, Int64(out.count))
        }
    }

    /// `body` between two looks at the object, again while they disagree (three tries): for
    /// stores whose reads do not say which version they read.
    func consistently<T>(_ key: String, _ body: () throws -> (T, Int64)) throws -> (bytes: T, object: StoredObject) {
        for _ in 0..<3 {
            let before = try head(key)
            let (value, size) = try body()
            let after = try head(key)
            if let after, let before, after.size == size, before.size == size, after.etag == before.etag,
               after.lastModified == before.lastModified {
                return (value, after)
            }
            if after == nil { throw StorageError.notFound(key) }
        }
        throw StorageError.io("\(location)/\(key) kept changing while it was read (three tries)")
    }

    /// A small object, whole (refused beyond `limit`: metadata, not data).
    public func read(_ key: String, limit: Int = 16 << 20) throws -> [UInt8] {
        var out: [UInt8] = []
        try get(key, range: nil) { chunk in
            guard out.count + chunk.count <= limit else { throw StorageError.io("\(key) is larger than \(limit >> 20) MiB; not a metadata file") }
            out += chunk
        }
        return out
    }

    /// Every object under `prefix` (no delimiter), in key order.
    public func listAll(prefix: String) throws -> [StoredObject] {
        var out: [StoredObject] = []
        try list(prefix: prefix, delimiter: nil, startAfter: nil) { objects, _ in out += objects }
        return out
    }
}

/// A store as engines receive it: the storage, and what a drctl child process (PostgreSQL's
/// restore_command running `drctl wal-restore`) needs to reach the same store: its options,
/// and the keys as the files of a `--credentials-dir` (ACCESS_KEY_ID, …), which HostRestore
/// hands over in a directory only the server's user can read, never in its environment.
public struct StoreAccess: Sendable {
    public var storage: any StorageWriter
    public var childArguments: [String]
    public var secretFiles: [(name: String, value: String)]
    public init(storage: any StorageWriter, childArguments: [String] = [], secretFiles: [(name: String, value: String)] = []) {
        self.storage = storage; self.childArguments = childArguments; self.secretFiles = secretFiles
    }
}

/// Where a store is, as a URL: `s3://bucket/prefix` or `file:///path/prefix`.
public enum StorageURL: Equatable, Sendable {
    case s3(bucket: String, key: String)
    /// A directory laid out exactly as the bucket (`root`), and the key prefix below it.
    case file(root: String, key: String)

    /// `file:///srv/copy/cnpg`: the directory `/srv/copy` is the bucket when it holds a
    /// `.drctl-bucket` marker somewhere above the path, else the whole path is the bucket and the
    /// key is empty. Without a marker, `file:///srv/copy` plus the prefix the command already
    /// knows (the policy's) is the usual form.
    public static func parse(_ s: String) throws -> StorageURL {
        if s.hasPrefix("s3://") { return try S3Storage.parse(s) }
        guard s.hasPrefix("file://") else { throw StorageError.io("'\(s)' is neither s3://bucket/path nor file:///path") }
        let path = String(s.dropFirst(7))
        guard path.hasPrefix("/") else { throw StorageError.io("'\(s)': a file URL has an absolute path (file:///path)") }
        var root = path
        while root.count > 1 {
            if FileManager.default.fileExists(atPath: root + "/" + FileStorage.marker) {
                let key = String(path.dropFirst(root.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
                return .file(root: root, key: key)
            }
            root = (root as NSString).deletingLastPathComponent
        }
        return .file(root: path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path, key: "")
    }
}

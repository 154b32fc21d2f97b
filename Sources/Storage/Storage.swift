import Foundation
import ObjectStore

/// One object of a store, whatever the store is.
public struct StoredObject: Sendable, Equatable {
    public var key: String
    public var size: Int64
    /// The store's entity tag, without quotes; empty when it has none (a file).
    public var etag: String
    public var lastModified: Date?
    public init(key: String, size: Int64, etag: String = "", lastModified: Date? = nil) {
        self.key = key; self.size = size; self.etag = etag; self.lastModified = lastModified
    }
}

public enum StorageError: Error, CustomStringConvertible, Equatable {
    case notFound(String)
    /// A key no store of this kind can hold as given (`..`, an empty segment, a NUL): refused
    /// rather than mapped somewhere else.
    case invalidKey(String, String)
    case io(String)

    public var description: String {
        switch self {
        case .notFound(let k): return "\(k): no such object"
        case .invalidKey(let k, let why): return "'\(k)' is not a key this store can hold: \(why)"
        case .io(let m): return m
        }
    }
}

/// The read side of a store, scoped to one bucket (or directory): what scanners, sync, restore
/// and WAL fetch need. Keys are the bucket's, with `/` as the only separator.
public protocol StorageReader: Sendable {
    /// Where it is, for messages: `s3://bucket`, `file:///path`, `memory:`.
    var location: String { get }
    /// Objects under `prefix` in key order, in pages; with `delimiter`, the common prefixes too.
    func list(prefix: String, delimiter: String?, startAfter: String?, _ page: ([StoredObject], [String]) throws -> Void) throws
    /// nil when there is no such object.
    func head(_ key: String) throws -> StoredObject?
    /// The object's bytes (or `range` of them, inclusive) in chunks; `StorageError.notFound` if none.
    func get(_ key: String, range: ClosedRange<Int64>?, _ chunk: (UnsafeRawBufferPointer) throws -> Void) throws
}

/// The write side: what evidence upload, prune and copies need.
public protocol StorageWriter: StorageReader {
    /// Stores `bytes` under `key`, whole or not at all.
    @discardableResult func put(_ key: String, bytes: [UInt8]) throws -> StoredObject
    /// Deletes each key (a missing one is not an error, as in S3).
    func delete(_ keys: [String]) throws
}

extension StorageReader {
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
        if s.hasPrefix("s3://") {
            // The client's own parser: the same bucket-name rules wherever s3:// is accepted.
            let url = try S3URL(parsing: s)
            return .s3(bucket: url.bucket, key: url.key)
        }
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

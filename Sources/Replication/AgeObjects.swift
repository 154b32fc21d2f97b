import Age
import Foundation
import Storage
import Support

/// A store in which any object may be a whole age file: Velero's client-side encryption of a
/// BackupStorageLocation (`spec.encryption.type: age`) streams every object it puts through
/// age at the object's own key (velero `pkg/persistence/object_store_encryption.go`), and Velero
/// reads it back through the same identity. Here each whole-object read that starts with the age
/// header is decrypted with `identities`; without one that opens it, the read fails naming the
/// object and what to give, instead of handing the ciphertext to a JSON or tar reader. Other
/// objects pass through unchanged, as do ranged reads (only whole objects are encrypted whole),
/// listings (sizes are the stored ones) and writes.
public struct AgeObjects: StorageWriter {
    public let inner: any StorageWriter
    let identities: [Age.Identity]
    static let header = Array("age-encryption.org/v1\n".utf8)

    public var location: String { inner.location }
    public var identity: String { inner.identity }
    public var bucketName: String { inner.bucketName }

    public init(_ inner: any StorageWriter, identities: [Age.Identity]) {
        self.inner = inner
        self.identities = identities
    }

    public func list(prefix: String, delimiter: String?, startAfter: String?, _ page: ([StoredObject], [String]) throws -> Void) throws {
        try inner.list(prefix: prefix, delimiter: delimiter, startAfter: startAfter, page)
    }

    public func head(_ key: String) throws -> StoredObject? { try inner.head(key) }

    public func get(_ key: String, range: ClosedRange<Int64>?, _ chunk: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard range == nil else { return try inner.get(key, range: range, chunk) }
        let header = Self.header, identities = self.identities, location = self.location
        try withoutActuallyEscaping(chunk) { chunk in
            var head: [UInt8] = []
            var decided = false
            var decryptor: Age.Decryptor?
            let emit: ([UInt8]) throws -> Void = { bytes in try bytes.withUnsafeBytes(chunk) }
            func decide() throws {
                decided = true
                if head.starts(with: header) {
                    guard !identities.isEmpty else {
                        throw StorageError.io("\(location)/\(key) is encrypted with age (a Velero storage location with spec.encryption.type: age): give its identity with --identity FILE")
                    }
                    decryptor = Age.Decryptor(identities: identities)
                    try head.withUnsafeBytes { try decryptor!.feed($0, emit) }
                } else {
                    try emit(head)
                }
                head = []
            }
            do {
                try inner.get(key, range: nil) { part in
                    if decided {
                        if let d = decryptor { try d.feed(part, emit) } else { try chunk(part) }
                        return
                    }
                    head += part
                    if head.count >= header.count { try decide() }
                }
                if !decided { try decide() }
                try decryptor?.finish(emit)
            } catch let e as Age.Failure {
                throw StorageError.io("\(location)/\(key): \(e)")
            }
        }
    }

    /// The store's own download (parallel for S3), then, only for an age file, decrypted in place.
    public func download(_ key: String, to path: String) throws -> StoredObject {
        let got = try inner.download(key, to: path)
        guard let fh = FileHandle(forReadingAtPath: path) else { return got }
        let start = (try? fh.read(upToCount: Self.header.count)).map { Array($0) } ?? []
        try? fh.close()
        guard start == Self.header else { return got }
        let plain = path + ".plain"
        defer { unlink(plain) }
        // Written as every spool file is: new (never through a name already there), whole, synced.
        let out = open(plain, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard out >= 0 else { throw StorageError.io("\(plain): \(String(cString: strerror(errno)))") }
        defer { close(out) }
        let file = FileStorage(root: (path as NSString).deletingLastPathComponent)
        try AgeObjects(file, identities: identities).get((path as NSString).lastPathComponent, range: nil) { try writeAll(out, $0, path: plain) }
        guard fsync(out) == 0 else { throw StorageError.io("\(plain): \(String(cString: strerror(errno)))") }
        guard rename(plain, path) == 0 else { throw StorageError.io("\(path): \(String(cString: strerror(errno)))") }
        var m = got
        m.size = Int64((try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
        return m
    }

    public func bucketLock() throws -> BucketLock { try inner.bucketLock() }
    public func put(_ key: String, bytes: [UInt8], contentType: String?) throws -> StoredObject { try inner.put(key, bytes: bytes, contentType: contentType) }
    public func delete(versions: [StoredVersion]) throws -> [DeleteRefusal] { try inner.delete(versions: versions) }
}

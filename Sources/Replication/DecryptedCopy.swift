import Age
import Foundation
import Layout
import Storage
import Support

/// A copy that `drctl copy` encrypted, read as the plain bucket it copies: objects its records
/// list as encrypted are decrypted (and authenticated) on the way out, and listings show their
/// plaintext sizes, so scanners, restores and drills read it like any store. Writes (drill
/// evidence, prune) go to the copy as they are.
public struct DecryptedCopy: StorageWriter {
    public let inner: any StorageWriter
    let identities: [Age.Identity]
    /// Encrypted key -> plaintext size.
    let plain: [String: Int64]

    public var location: String { inner.location }
    public var identity: String { inner.identity }
    public var bucketName: String { inner.bucketName }

    public init(_ inner: any StorageWriter, identities: [Age.Identity], records: [CopyState]) {
        self.inner = inner
        self.identities = identities
        var plain: [String: Int64] = [:]
        for r in records { for (k, e) in r.objects where e.recipients != nil { plain[k] = e.size } }
        self.plain = plain
    }

    /// Every copy record under a drctl prefix (`<drctl>/copies/*.json`) that decodes.
    public static func records(_ storage: any StorageReader, drctlRoot: String) throws -> [CopyState] {
        let prefix = DrctlLayout(root: drctlRoot).copyStateKey(source: "").dropLast(5)   // "<drctl>/copies/"
        return try storage.listAll(prefix: String(prefix)).filter { $0.key.hasSuffix(".json") }.compactMap {
            try? JSONCoding.decoder().decode(CopyState.self, from: Data(try storage.read($0.key, limit: 256 << 20)))
        }
    }

    /// The recipients the records name, for messages.
    public static func recipients(_ records: [CopyState]) -> [String] {
        Array(Set(records.flatMap { $0.objects.values.compactMap(\.recipients).flatMap { $0 } })).sorted()
    }

    func mapped(_ o: StoredObject) -> StoredObject {
        guard let size = plain[o.key] else { return o }
        var m = o
        m.size = size
        return m
    }

    public func list(prefix: String, delimiter: String?, startAfter: String?, _ page: ([StoredObject], [String]) throws -> Void) throws {
        try inner.list(prefix: prefix, delimiter: delimiter, startAfter: startAfter) { try page($0.map(mapped), $1) }
    }

    public func head(_ key: String) throws -> StoredObject? { try inner.head(key).map(mapped) }

    public func get(_ key: String, range: ClosedRange<Int64>?, _ chunk: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard plain[key] != nil else { return try inner.get(key, range: range, chunk) }
        let d = Age.Decryptor(identities: identities)
        try withoutActuallyEscaping(chunk) { chunk in
            var offset: Int64 = 0
            let emit: ([UInt8]) throws -> Void = { bytes in
                defer { offset += Int64(bytes.count) }
                guard let range else { return try bytes.withUnsafeBytes(chunk) }
                let lo = max(range.lowerBound - offset, 0), hi = min(range.upperBound - offset + 1, Int64(bytes.count))
                if lo < hi { try bytes[Int(lo)..<Int(hi)].withUnsafeBytes(chunk) }
            }
            do {
                try inner.get(key, range: nil) { try d.feed($0, emit) }
                try d.finish(emit)
            } catch let e as Age.Failure {
                throw StorageError.io("\(location)/\(key): \(e)")
            }
        }
    }

    public func bucketLock() throws -> BucketLock { try inner.bucketLock() }

    public func put(_ key: String, bytes: [UInt8], contentType: String?) throws -> StoredObject { try inner.put(key, bytes: bytes, contentType: contentType) }
    public func delete(versions: [StoredVersion]) throws -> [DeleteRefusal] { try inner.delete(versions: versions) }
}

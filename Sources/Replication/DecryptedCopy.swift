import Age
import Foundation
import Hashing
import Records
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
    /// Key -> the SHA-256 of what drctl copied there (plaintext), from the sealed records.
    let digests: [String: String]
    /// Only what the sealed records list is handed out (besides the records themselves): anyone
    /// can encrypt to a copy's public recipient, so an object the records do not vouch for is
    /// not listed, not found and not read; a recorded one whose plaintext is not the recorded
    /// SHA-256 fails its read.
    public var onlyRecorded = false

    public var location: String { inner.location }
    public var identity: String { inner.identity }
    public var bucketName: String { inner.bucketName }

    public init(_ inner: any StorageWriter, identities: [Age.Identity], records: [CopyState]) {
        self.inner = inner
        self.identities = identities
        var plain: [String: Int64] = [:], digests: [String: String] = [:]
        for r in records {
            for (k, e) in r.objects {
                if e.recipients != nil { plain[k] = e.size }
                if let d = e.sha256 { digests[k] = d }
            }
        }
        self.plain = plain
        self.digests = digests
        recorded = Set(records.flatMap(\.objects.keys))
    }

    let recorded: Set<String>

    /// Every copy record under a drctl prefix (`<drctl>/copies/*.json`) that drctl sealed.
    public static func records(_ storage: any StorageReader, drctlRoot: String, keys: RecordKeyring = .current) throws -> [CopyState] {
        try recordsFound(storage, drctlRoot: drctlRoot, keys: keys).sealed
    }

    /// The copy records under a drctl prefix, each read once: those drctl sealed, and the keys
    /// of those it did not seal that claim encrypted objects (an encrypted copy whose records
    /// cannot be trusted).
    public static func recordsFound(_ storage: any StorageReader, drctlRoot: String,
                                    keys: RecordKeyring = .current) throws -> (sealed: [CopyState], unsealedEncrypted: [String]) {
        let prefix = DrctlLayout(root: drctlRoot).copyStateKey(source: "").dropLast(5)   // "<drctl>/copies/"
        var sealed: [CopyState] = [], unsealed: [String] = []
        // Each record once, with its journal (a record whose first run stopped before its end has only that).
        var stateKeys = Set<String>()
        for o in try storage.listAll(prefix: String(prefix)) {
            let first = o.key.dropFirst(prefix.count).split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            if first.count == 1, first[0].hasSuffix(".json") { stateKeys.insert(o.key) }
            if first.count == 2, first[0].hasSuffix(".journal") { stateKeys.insert(prefix + first[0].dropLast(8) + ".json") }
        }
        for key in stateKeys.sorted() {
            let (state, how) = try CopyInspector.read(storage, stateKey: key, keys: keys)
            if how?.isAuthentic == true, let state { sealed.append(state) }
            else if state?.objects.values.contains(where: { $0.recipients != nil }) == true { unsealed.append(key) }
        }
        return (sealed, unsealed)
    }

    /// drctl's prefix in the copy: what drctl writes there itself (evidence of drills from the
    /// copy, prune journals) is sealed record by record, and read as it is.
    public var ownPrefix: String?

    /// Whether `key` may be handed out: recorded, or one of drctl's own sealed records.
    func vouched(_ key: String) -> Bool {
        !onlyRecorded || recorded.contains(key) || ownPrefix.map { key.hasPrefix($0 + "/") && !key.hasPrefix($0 + "/" + DrctlLayout.changedFolder) } ?? false
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
        try inner.list(prefix: prefix, delimiter: delimiter, startAfter: startAfter) { try page($0.filter { vouched($0.key) }.map(mapped), $1) }
    }

    public func head(_ key: String) throws -> StoredObject? { vouched(key) ? try inner.head(key).map(mapped) : nil }

    public func get(_ key: String, range: ClosedRange<Int64>?, _ chunk: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard vouched(key) else { throw StorageError.io("\(location)/\(key): not in the copy's sealed record: not read (anyone can encrypt to the copy's recipient)") }
        guard plain[key] != nil else { return try inner.get(key, range: range, chunk) }
        let d = Age.Decryptor(identities: identities)
        // A whole read is checked against the recorded plaintext: the end of the stream fails
        // when the object is not the one drctl copied.
        let sha = range == nil && onlyRecorded ? digests[key].map { ($0, SHA256Stream()) } : nil
        try withoutActuallyEscaping(chunk) { chunk in
            var offset: Int64 = 0
            let emit: ([UInt8]) throws -> Void = { bytes in
                defer { offset += Int64(bytes.count) }
                bytes.withUnsafeBytes { sha?.1.update($0) }
                guard let range else { return try bytes.withUnsafeBytes(chunk) }
                let lo = max(range.lowerBound - offset, 0), hi = min(range.upperBound - offset + 1, Int64(bytes.count))
                if lo < hi { try bytes[Int(lo)..<Int(hi)].withUnsafeBytes(chunk) }
            }
            do {
                try inner.get(key, range: nil) { try d.feed($0, emit) }
                try d.finish(emit)
                if let (want, got) = sha, got.finish() != want {
                    throw StorageError.io("\(location)/\(key): its plaintext is not the one drctl copied (SHA-256 differs from the sealed record)")
                }
            } catch let e as Age.Failure {
                throw StorageError.io("\(location)/\(key): \(e)")
            }
        }
    }

    public func bucketLock() throws -> BucketLock { try inner.bucketLock() }

    public func put(_ key: String, bytes: [UInt8], contentType: String?) throws -> StoredObject { try inner.put(key, bytes: bytes, contentType: contentType) }
    public func delete(versions: [StoredVersion]) throws -> [DeleteRefusal] { try inner.delete(versions: versions) }
}

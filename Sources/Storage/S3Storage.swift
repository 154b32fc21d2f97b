import Foundation
import Support
import HTTP
import ObjectStore

/// A bucket through drctl's own S3 client: the driver for RGW and AWS S3. The only place outside
/// ObjectStore (and the commands that build clients) where S3 types appear.
public struct S3Storage: StorageWriter {
    public let client: S3Client
    public let bucket: String
    public var bucketName: String { bucket }
    public var location: String { "s3://\(bucket)" }
    public var identity: String { "\(client.config.endpoint)/\(bucket)" }

    public init(client: S3Client, bucket: String) {
        self.client = client
        self.bucket = bucket
    }

    /// `s3://bucket/key` by the client's own parser: the same bucket-name rules wherever s3:// is accepted.
    static func parse(_ s: String) throws -> StorageURL {
        let url = try S3URL(parsing: s)
        return .s3(bucket: url.bucket, key: url.key)
    }

    static func stored(_ o: ObjectInfo) -> StoredObject {
        StoredObject(key: o.key, size: o.size, etag: o.etag, lastModified: o.lastModified, versionID: o.versionID,
                     lock: o.lock.map { VersionLock(mode: $0.mode, retainUntil: $0.retainUntil, legalHold: $0.legalHold) })
    }

    public func list(prefix: String, delimiter: String?, startAfter: String?, _ page: ([StoredObject], [String]) throws -> Void) throws {
        if delimiter == nil && startAfter == nil {
            // Large archives: listed in parallel by key range.
            try client.listObjectsParallel(bucket: bucket, prefix: prefix) { try page($0.objects.map(Self.stored), []) }
        } else {
            try client.listObjects(bucket: bucket, prefix: prefix, delimiter: delimiter, startAfter: startAfter) {
                try page($0.objects.map(Self.stored), $0.commonPrefixes)
            }
        }
    }

    public func head(_ key: String) throws -> StoredObject? {
        do {
            return Self.stored(try client.headObject(S3URL(bucket: bucket, key: key)))
        } catch let e as S3Error where e.isNotFound {
            return nil
        }
    }

    public func get(_ key: String, range: ClosedRange<Int64>?, _ chunk: (UnsafeRawBufferPointer) throws -> Void) throws {
        do {
            try withoutActuallyEscaping(chunk) { chunk in
                _ = try client.getObject(S3URL(bucket: bucket, key: key), range: range, consumer: chunk)
            }
        } catch let e as S3Error where e.isNotFound {
            throw StorageError.notFound(key)
        }
    }

    @discardableResult
    public func put(_ key: String, bytes: [UInt8], contentType: String?) throws -> StoredObject {
        try Fence.process.check("put \(location)/\(key)")
        return Self.stored(try client.putObject(S3URL(bucket: bucket, key: key), bytes: bytes, contentType: contentType))
    }

    /// `If-None-Match: *`. Whether the store honours it (AWS S3 does; older RGW and other
    /// stores may ignore it and replace the object) is found out once per store, with a probe
    /// object beside `key` written twice, and remembered for the process.
    public func create(_ key: String, bytes: [UInt8], contentType: String?) throws -> Bool? {
        try Fence.process.check("put \(location)/\(key)")
        guard try Self.honoursIfNoneMatch(self, near: key) else { return nil }
        do {
            _ = try client.putObject(S3URL(bucket: bucket, key: key), bytes: bytes, contentType: contentType, ifAbsent: true)
            return true
        } catch let e as S3Error where e.status == 412 || e.status == 409 {
            return false
        }
    }

    private static let probed = ProbeCache()

    static func honoursIfNoneMatch(_ s: S3Storage, near key: String) throws -> Bool {
        if let known = probed.get(s.identity) { return known }
        let probe = S3URL(bucket: s.bucket, key: key + ".if-none-match-probe-" + UUID().uuidString.prefix(8))
        var honoured = false
        do {
            _ = try s.client.putObject(probe, bytes: [1], ifAbsent: true)
            do {
                _ = try s.client.putObject(probe, bytes: [2], ifAbsent: true)
            } catch let e as S3Error where e.status == 412 || e.status == 409 {
                honoured = true
            }
        } catch let e as S3Error where [400, 403, 501].contains(e.status) {
            honoured = false   // a store that refuses the header outright: written and read back instead
        }
        _ = try? s.client.deleteObjects(bucket: s.bucket, versions: [ObjectVersion(key: probe.key, versionID: nil)])
        probed.set(s.identity, honoured)
        return honoured
    }

    /// The client's resumed, checked download (a changed object restarts it from the start).
    public func download(_ key: String, to path: String) throws -> StoredObject {
        do {
            return Self.stored(try client.download(S3URL(bucket: bucket, key: key), to: path, overwrite: true))
        } catch let e as S3Error where e.isNotFound {
            throw StorageError.notFound(key)
        }
    }

    /// One GET: its own ETag is that of the bytes (a resumed GET continues only on the same ETag).
    public func fetch(_ key: String, limit: Int) throws -> (bytes: [UInt8], object: StoredObject) {
        var out: [UInt8] = []
        do {
            let info = try client.getObject(S3URL(bucket: bucket, key: key)) { chunk in
                guard out.count + chunk.count <= limit else { throw ObjectTooLarge(key: key, limit: limit) }
                out += chunk
            }
            return (out, Self.stored(info))
        } catch let e as S3Error where e.isNotFound {
            throw StorageError.notFound(key)
        }
    }

    /// The client's upload: parallel multipart above its threshold, each part checked by its ETag.
    @discardableResult
    public func put(_ key: String, file path: String, lastModified: Date?) throws -> StoredObject {
        try Fence.process.check("put \(location)/\(key)")
        return Self.stored(try client.upload(file: path, to: S3URL(bucket: bucket, key: key)))
    }

    public func delete(versions: [StoredVersion]) throws -> [DeleteRefusal] {
        try Fence.process.check("delete in \(location)")
        return try client.deleteObjects(bucket: bucket, versions: versions.map { ObjectVersion(key: $0.key, versionID: $0.versionID) })
            .map { DeleteRefusal(key: $0.key, code: $0.code, message: $0.message) }
    }

    public func bucketLock() throws -> BucketLock {
        do {
            let c = try client.objectLockConfiguration(bucket: bucket)
            return BucketLock(enabled: c.enabled, mode: c.mode, defaultRetentionSeconds: c.defaultRetentionSeconds)
        } catch let e as S3Error where e.status == 403 {
            throw StorageError.accessDenied("\(location): no right to read the Object Lock configuration: \(e.code)")
        }
    }
}

extension StorageError {
    /// Whether `error` means the store is unavailable (no answer at all, or failing with 5xx
    /// after the retries) rather than refusing or missing something: `drctl serve` then shows
    /// its workloads UNKNOWN instead of judging them from an old listing.
    public static func isUnavailable(_ error: any Error) -> Bool {
        error is TransportError || ((error as? S3Error)?.status ?? 0) >= 500
    }
}

/// Per store identity: whether it honours `If-None-Match: *` on a put.
private final class ProbeCache: @unchecked Sendable {
    private let lock = NSLock()
    private var known: [String: Bool] = [:]
    func get(_ id: String) -> Bool? { lock.withLock { known[id] } }
    func set(_ id: String, _ v: Bool) { lock.withLock { known[id] = v } }
}

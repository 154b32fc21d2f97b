import Foundation
import ObjectStore

/// A bucket through drctl's own S3 client: the driver for RGW and AWS S3. The only place outside
/// ObjectStore (and the commands that build clients) where S3 types appear.
public struct S3Storage: StorageWriter {
    public let client: S3Client
    public let bucket: String
    public var location: String { "s3://\(bucket)" }

    public init(client: S3Client, bucket: String) {
        self.client = client
        self.bucket = bucket
    }

    static func stored(_ o: ObjectInfo) -> StoredObject {
        StoredObject(key: o.key, size: o.size, etag: o.etag, lastModified: o.lastModified)
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
    public func put(_ key: String, bytes: [UInt8]) throws -> StoredObject {
        Self.stored(try client.putObject(S3URL(bucket: bucket, key: key), bytes: bytes))
    }

    public func delete(_ keys: [String]) throws {
        let failures = try client.deleteObjects(bucket: bucket, keys: keys)
        if let f = failures.first { throw StorageError.io("\(location)/\(f.key): \(f.code) \(f.message)") }
    }
}

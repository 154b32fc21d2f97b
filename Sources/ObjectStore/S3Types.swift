import Foundation
import HTTP
import Hashing
import SigV4
import Support
import Logging

/// How to reach a store: endpoint, region, keys, TLS, timeouts, retries.
public struct S3Configuration: Sendable {
    public var endpoint: S3Endpoint
    public var region: String
    public var credentials: Credentials
    public var tls = TLSOptions()
    public var timeouts = TimeoutOptions()
    public var retry = RetryPolicy()
    /// Files larger than this are uploaded in parts.
    public var multipartThreshold: Int64 = 64 << 20
    public var partSize: Int64 = 16 << 20
    /// Parts in flight at once.
    public var concurrency = 4

    public init(endpoint: S3Endpoint, region: String, credentials: Credentials) {
        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials
    }
}

/// One object as a listing or HEAD reports it.
public struct ObjectInfo: Sendable, Codable, Equatable {
    public var key: String
    public var size: Int64
    /// Without quotes. Empty when the store sent none.
    public var etag: String
    public var lastModified: Date?
    public var storageClass: String?
    public var contentType: String?
    /// HEAD only: the version (on a versioned bucket) and its Object Lock, if any.
    public var versionID: String?
    public var lock: ObjectLockState?

    public init(key: String, size: Int64, etag: String, lastModified: Date? = nil, storageClass: String? = nil, contentType: String? = nil,
                versionID: String? = nil, lock: ObjectLockState? = nil) {
        self.key = key
        self.size = size
        self.etag = etag
        self.lastModified = lastModified
        self.storageClass = storageClass
        self.contentType = contentType
        self.versionID = versionID
        self.lock = lock
    }

    /// A single-part upload's ETag is the MD5 of its bytes; a multipart one ends in `-N`.
    public var etagIsMD5: Bool { etag.count == 32 && etag.allSatisfy(\.isHexDigit) }
}

public struct ListPage: Sendable {
    public var objects: [ObjectInfo]
    public var commonPrefixes: [String]
    public var isTruncated: Bool
    public var nextContinuationToken: String?
}

public struct DeleteFailure: Sendable, Error, CustomStringConvertible {
    public var key: String
    public var code: String
    public var message: String
    public var description: String { "\(key): \(code) \(message)" }
}

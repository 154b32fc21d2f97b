import Foundation
import HTTP
import Hashing
import Support

/// A bucket's S3 Object Lock configuration. Lock can only be enabled when a bucket is created
/// (it turns versioning on); the default retention then applies to every object written after.
public struct BucketObjectLock: Sendable, Codable, Equatable {
    public var enabled: Bool
    /// The default retention's mode (GOVERNANCE or COMPLIANCE), if the bucket has one.
    public var mode: String?
    public var days: Int?
    public var years: Int?

    public init(enabled: Bool, mode: String? = nil, days: Int? = nil, years: Int? = nil) {
        self.enabled = enabled
        self.mode = mode
        self.days = days
        self.years = years
    }

    /// The default retention in seconds (a year counted as 365 days, as S3 does).
    public var defaultRetentionSeconds: Int? {
        if let days { return days * 86400 }
        if let years { return years * 365 * 86400 }
        return nil
    }

    public var description: String {
        guard enabled else { return "not enabled" }
        guard let mode, let seconds = defaultRetentionSeconds else { return "enabled, no default retention" }
        return "enabled, default retention \(mode) \(seconds / 86400)d"
    }
}

/// The lock on one object version, as HEAD reports it.
public struct ObjectLockState: Sendable, Codable, Equatable {
    public var mode: String?
    public var retainUntil: Date?
    public var legalHold: Bool

    public init(mode: String?, retainUntil: Date?, legalHold: Bool) {
        self.mode = mode
        self.retainUntil = retainUntil
        self.legalHold = legalHold
    }

    /// Whether the store refuses to delete this version at `now`.
    public func isLocked(at now: Date) -> Bool { legalHold || (retainUntil.map { $0 > now } ?? false) }

    init?(headers r: HTTPResponse) {
        let mode = r.header("x-amz-object-lock-mode")
        let until = r.header("x-amz-object-lock-retain-until-date").flatMap(RFC3339.parse)
        let hold = r.header("x-amz-object-lock-legal-hold")?.uppercased() == "ON"
        guard mode != nil || until != nil || hold else { return nil }
        self.init(mode: mode, retainUntil: until, legalHold: hold)
    }
}

/// One version to delete: a key, and the version when the bucket keeps versions.
public struct ObjectVersion: Sendable, Hashable {
    public var key: String
    public var versionID: String?
    public init(key: String, versionID: String? = nil) {
        self.key = key
        self.versionID = versionID
    }
}

extension S3Responses {
    /// GetObjectLockConfiguration's document.
    package static func objectLockConfiguration(_ body: [UInt8]) throws -> BucketObjectLock {
        let root = try XMLElement.parse(body)
        guard root.name == "ObjectLockConfiguration" else { throw S3ResponseError.malformed("expected ObjectLockConfiguration, got \(root.name)") }
        let retention = root.child("Rule")?.child("DefaultRetention")
        func int(_ name: String) throws -> Int? {
            guard let s = retention?.string(name) else { return nil }
            guard let v = Int(s), v > 0, v <= 36500 else { throw S3ResponseError.malformed("Object Lock default retention \(name) '\(s)'") }
            return v
        }
        return BucketObjectLock(enabled: root.string("ObjectLockEnabled") == "Enabled", mode: retention?.string("Mode"),
                                days: try int("Days"), years: try int("Years"))
    }
}

extension S3Client {
    /// The bucket's Object Lock configuration; `enabled: false` when it has none.
    public func objectLockConfiguration(bucket: String) throws -> BucketObjectLock {
        do {
            let (_, body) = try sendCollecting(Call(method: "GET", bucket: bucket, key: nil, query: [("object-lock", "")]))
            return try S3Responses.objectLockConfiguration(body)
        } catch let e as S3Error where e.code == "ObjectLockConfigurationNotFoundError" {
            return BucketObjectLock(enabled: false)
        }
    }

    /// Creates a bucket with Object Lock enabled (and so versioning); optionally sets its default retention.
    public func createBucket(_ bucket: String, objectLock: BucketObjectLock) throws {
        var call = Call(method: "PUT", bucket: bucket, key: nil)
        call.headers.append(("x-amz-bucket-object-lock-enabled", objectLock.enabled ? "true" : "false"))
        _ = try sendCollecting(call)
        if objectLock.enabled, let mode = objectLock.mode {
            var rule = "<Mode>\(xmlEscape(mode))</Mode>"
            if let d = objectLock.days { rule += "<Days>\(d)</Days>" } else if let y = objectLock.years { rule += "<Years>\(y)</Years>" }
            let body = Array(("<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ObjectLockEnabled>Enabled</ObjectLockEnabled>"
                + "<Rule><DefaultRetention>\(rule)</DefaultRetention></Rule></ObjectLockConfiguration>").utf8)
            _ = try sendCollecting(Call(method: "PUT", bucket: bucket, key: nil, query: [("object-lock", "")],
                                        headers: [("Content-MD5", Hash.md5(body).base64), ("Content-Type", "application/xml")],
                                        body: .bytes(body), payloadHash: Hash.sha256(body).hex))
        }
    }
}

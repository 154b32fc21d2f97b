import Foundation
import Support

/// Where the object store is and how buckets are addressed on it.
public struct S3Endpoint: Sendable, CustomStringConvertible {
    public enum Addressing: String, Sendable {
        /// `http://host/bucket/key` — RGW's default and what Velero/CNPG use with Ceph.
        case path
        /// `https://bucket.host/key` — AWS's default.
        case virtualHosted
    }

    public var scheme: String
    public var host: String
    public var port: Int?
    public var addressing: Addressing

    /// Parses `http(s)://host[:port]`. With no addressing given, AWS endpoints use
    /// virtual-hosted addressing and every other endpoint path-style.
    public init(url: String, addressing: Addressing? = nil) throws {
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), ["http", "https"].contains(scheme),
              let host = c.host, !host.isEmpty else {
            throw ConfigError("endpoint '\(url)' is not an http(s)://host[:port] URL")
        }
        if !(c.path.isEmpty || c.path == "/") || c.query != nil {
            throw ConfigError("endpoint '\(url)' must not have a path or query (give the bucket in the s3:// URL)")
        }
        if c.user != nil || c.password != nil {
            throw ConfigError("endpoint must not carry credentials in its URL")
        }
        self.scheme = scheme
        self.host = host
        self.port = c.port
        self.addressing = addressing ?? (host.hasSuffix("amazonaws.com") ? .virtualHosted : .path)
    }

    public static func aws(region: String) -> S3Endpoint {
        try! S3Endpoint(url: "https://s3.\(region).amazonaws.com", addressing: .virtualHosted)
    }

    var defaultPort: Int { scheme == "https" ? 443 : 80 }

    func hostHeader(bucket: String?) -> String {
        let base = port.map { $0 == defaultPort ? host : "\(host):\($0)" } ?? host
        if addressing == .virtualHosted, let bucket, !bucket.isEmpty { return "\(bucket).\(base)" }
        return base
    }

    /// The encoded path for a bucket and key: the key is percent-encoded byte for byte
    /// (slashes kept), never normalised, so `a//b/` and `a/./b` reach the store unchanged.
    func encodedPath(bucket: String?, key: String?) -> String {
        let k = key.map { URIEncoding.encode($0, keepSlash: true) } ?? ""
        guard let bucket, !bucket.isEmpty else { return "/" }
        switch addressing {
        case .path: return "/\(URIEncoding.encode(bucket))" + (key == nil ? "" : "/\(k)")
        case .virtualHosted: return "/\(k)"
        }
    }

    public var description: String { "\(scheme)://\(hostHeader(bucket: nil))" }
}

/// An `s3://bucket/key` address.
public struct S3URL: Sendable, CustomStringConvertible, Equatable {
    public var bucket: String
    public var key: String

    public init(bucket: String, key: String) {
        self.bucket = bucket
        self.key = key
    }

    /// Parses `s3://bucket[/key]`. The key is taken literally (no percent-decoding): what the
    /// operator typed is the object's name.
    public init(parsing s: String) throws {
        guard s.hasPrefix("s3://") else { throw ConfigError("'\(s)' is not an s3://bucket/key URL") }
        let rest = s.dropFirst(5)
        let slash = rest.firstIndex(of: "/")
        let bucket = String(slash.map { rest[..<$0] } ?? rest)
        guard Self.validBucket(bucket) else {
            throw ConfigError("'\(bucket)' in '\(s)' is not a valid bucket name (3-63 characters: lower-case letters, digits, '.', '-')")
        }
        self.bucket = bucket
        self.key = slash.map { String(rest[rest.index(after: $0)...]) } ?? ""
    }

    static func validBucket(_ b: String) -> Bool {
        guard (3...63).contains(b.count) else { return false }
        return b.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }
    }

    public var description: String { key.isEmpty ? "s3://\(bucket)" : "s3://\(bucket)/\(key)" }
}

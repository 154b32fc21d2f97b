import Foundation
import Hashing
import Support

/// Access credentials. `description` never shows the secret or the token.
public struct Credentials: Sendable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// Where they came from, for messages ("environment", "profile default in ~/.aws/credentials", …).
    public var source: String

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, source: String = "explicit") {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.source = source
    }

    public var description: String { "Credentials(accessKeyID: \(accessKeyID), source: \(source), secret: <redacted>)" }

    /// Every secret string these credentials carry, for redaction.
    public var secrets: [String] { [secretAccessKey] + (sessionToken.map { [$0] } ?? []) }
}

/// The parts of an HTTP request that AWS Signature Version 4 covers.
public struct SigV4Request: Sendable {
    public var method: String
    /// The path exactly as sent on the wire, already percent-encoded (e.g. `/bucket/a%20b`).
    public var encodedPath: String
    /// Query parameters, not encoded.
    public var query: [(name: String, value: String)]
    /// Headers to sign, including `host`.
    public var headers: [(name: String, value: String)]

    public init(method: String, encodedPath: String, query: [(name: String, value: String)] = [],
                headers: [(name: String, value: String)]) {
        self.method = method
        self.encodedPath = encodedPath
        self.query = query
        self.headers = headers
    }
}

/// AWS Signature Version 4 (header and presigned-URL forms). Pure: no I/O, no clock; the
/// caller passes the date. Defaults follow S3's rules: the path is used as sent (no double
/// encoding, no normalisation) and `x-amz-content-sha256` is always signed.
public struct SigV4Signer: Sendable {
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    public let credentials: Credentials
    public let region: String
    public let service: String
    /// Generic AWS services remove `.`/`..` segments and repeated slashes; S3 must not,
    /// since `a//b` and `a/./b` are distinct object keys.
    public var normalizePath: Bool = false
    /// S3 requires `x-amz-content-sha256` on every request (RGW rejects requests without it).
    public var sendContentSHA256Header: Bool = true
    /// Some services want the session token added after signing rather than signed.
    public var signSessionToken: Bool = true
    private let keyCache = SigningKeyCache()

    public init(credentials: Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    // MARK: header signing

    /// The result of signing, with the intermediate steps kept for tests. It holds the session
    /// token (in `headers`/`query`); never log it.
    public struct Signed: Sendable {
        /// Headers to add to the request (header signing), or the complete query (presigning).
        public var parameters: [(name: String, value: String)]
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
    }

    /// Signs `request` with an `Authorization` header. `parameters` are the headers to add to it
    /// (`x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token`, `Authorization`).
    public func signHeaders(_ request: SigV4Request, payloadHash: String, date: Date) -> Signed {
        let stamp = AmzDate(date)
        var added: [(name: String, value: String)] = [("x-amz-date", stamp.long)]
        if sendContentSHA256Header { added.append(("x-amz-content-sha256", payloadHash)) }
        var unsignedToken: (name: String, value: String)?
        if let token = credentials.sessionToken {
            if signSessionToken { added.append(("x-amz-security-token", token)) } else { unsignedToken = ("x-amz-security-token", token) }
        }
        let headers = Self.canonicalHeaders(request.headers + added)
        let canonical = canonicalRequest(method: request.method, path: request.encodedPath,
                                         query: Self.canonicalQuery(request.query),
                                         headers: headers, payloadHash: payloadHash)
        let toSign = stringToSign(canonicalRequest: canonical, date: stamp)
        let sig = signature(stringToSign: toSign, date: stamp)
        let auth = "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope(stamp)), SignedHeaders=\(headers.signed), Signature=\(sig)"
        return Signed(parameters: added + (unsignedToken.map { [$0] } ?? []) + [("Authorization", auth)],
                      canonicalRequest: canonical, stringToSign: toSign, signature: sig)
    }

    // MARK: query signing (presigned URLs)

    /// Signs `request` in its query string, as a presigned URL does. `parameters` is the full
    /// query (the request's own plus the `X-Amz-*` ones and `X-Amz-Signature`), not encoded.
    public func presign(_ request: SigV4Request, expires: Int, payloadHash: String = SigV4Signer.unsignedPayload,
                        date: Date) -> Signed {
        let stamp = AmzDate(date)
        let headers = Self.canonicalHeaders(request.headers)
        var query = request.query
        query.append(("X-Amz-Algorithm", "AWS4-HMAC-SHA256"))
        query.append(("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope(stamp))"))
        query.append(("X-Amz-Date", stamp.long))
        query.append(("X-Amz-Expires", String(expires)))
        if let token = credentials.sessionToken, signSessionToken { query.append(("X-Amz-Security-Token", token)) }
        query.append(("X-Amz-SignedHeaders", headers.signed))
        let canonical = canonicalRequest(method: request.method, path: request.encodedPath,
                                         query: Self.canonicalQuery(query), headers: headers, payloadHash: payloadHash)
        let toSign = stringToSign(canonicalRequest: canonical, date: stamp)
        let sig = signature(stringToSign: toSign, date: stamp)
        if let token = credentials.sessionToken, !signSessionToken { query.append(("X-Amz-Security-Token", token)) }
        query.append(("X-Amz-Signature", sig))
        return Signed(parameters: query, canonicalRequest: canonical, stringToSign: toSign, signature: sig)
    }

    // MARK: the steps of the algorithm

    /// Task 1: the canonical request.
    public func canonicalRequest(method: String, path: String, query: String,
                                 headers: (canonical: String, signed: String), payloadHash: String) -> String {
        let uri = normalizePath ? Self.normalized(path) : path
        return [method, uri.isEmpty ? "/" : uri, query, headers.canonical, headers.signed, payloadHash].joined(separator: "\n")
    }

    /// Task 2: the string to sign.
    public func stringToSign(canonicalRequest: String, date: AmzDate) -> String {
        ["AWS4-HMAC-SHA256", date.long, scope(date), Hash.sha256(Array(canonicalRequest.utf8)).hex].joined(separator: "\n")
    }

    /// Task 3, first half: the signing key, derived from the secret by chained HMACs over
    /// date, region, service and `aws4_request`. Cached per day/region/service.
    public func signingKey(date: AmzDate) -> [UInt8] {
        let cacheKey = "\(date.short)/\(region)/\(service)"
        if let key = keyCache.get(cacheKey) { return key }
        var key = Hash.hmacSHA256(key: Array("AWS4\(credentials.secretAccessKey)".utf8), data: Array(date.short.utf8))
        for part in [region, service, "aws4_request"] { key = Hash.hmacSHA256(key: key, data: Array(part.utf8)) }
        keyCache.set(cacheKey, key)
        return key
    }

    /// Task 3, second half: the hex signature.
    public func signature(stringToSign: String, date: AmzDate) -> String {
        Hash.hmacSHA256(key: signingKey(date: date), data: Array(stringToSign.utf8)).hex
    }

    public func scope(_ date: AmzDate) -> String { "\(date.short)/\(region)/\(service)/aws4_request" }

    /// Canonical headers: lower-case names, sorted; values trimmed with inner runs of white
    /// space folded to one space; repeated headers joined with commas in their original order.
    public static func canonicalHeaders(_ headers: [(name: String, value: String)]) -> (canonical: String, signed: String) {
        var merged: [String: [String]] = [:]
        for (name, value) in headers {
            let folded = value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " ")
            merged[name.lowercased(), default: []].append(folded)
        }
        let names = merged.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let canonical = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        return (canonical, names.joined(separator: ";"))
    }

    /// Canonical query string: names and values encoded, then sorted by name, then value.
    public static func canonicalQuery(_ query: [(name: String, value: String)]) -> String {
        query.map { (URIEncoding.encode($0.name), URIEncoding.encode($0.value)) }
            .sorted { a, b in
                a.0 == b.0 ? Array(a.1.utf8).lexicographicallyPrecedes(Array(b.1.utf8))
                           : Array(a.0.utf8).lexicographicallyPrecedes(Array(b.0.utf8))
            }
            .map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// RFC 3986 dot-segment removal plus folding of empty segments (generic services only).
    static func normalized(_ path: String) -> String {
        var out: [Substring] = []
        for seg in path.split(separator: "/", omittingEmptySubsequences: true) {
            if seg == "." { continue }
            if seg == ".." { if !out.isEmpty { out.removeLast() }; continue }
            out.append(seg)
        }
        let trailing = path.hasSuffix("/") && !out.isEmpty ? "/" : ""
        return "/" + out.joined(separator: "/") + trailing
    }
}

/// A request time in SigV4's two forms: `20150830T123600Z` and `20150830`.
public struct AmzDate: Sendable {
    public let long: String
    public let short: String

    public init(_ date: Date) {
        long = RFC3339.formatBasic(date)
        short = String(long.prefix(8))
    }
}

/// Derived signing keys keyed by day/region/service; a signer is copied freely, the cache is shared.
final class SigningKeyCache: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: [UInt8]] = [:]
    func get(_ key: String) -> [UInt8]? { lock.withLock { entries[key] } }
    func set(_ key: String, _ value: [UInt8]) {
        lock.withLock {
            if entries.count > 8 { entries.removeAll() }
            entries[key] = value
        }
    }
}

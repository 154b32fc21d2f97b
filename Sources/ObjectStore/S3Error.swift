/// An error response from the object store, decoded from S3's `<Error>` document (or, for
/// bodiless responses such as HEAD, from the status alone).
public struct S3Error: Error, CustomStringConvertible, Sendable {
    public var status: Int
    public var code: String
    public var message: String
    public var requestID: String?
    public var resource: String?
    /// What drctl was doing: `GET s3://bucket/key`.
    public var operation: String

    public init(status: Int, code: String, message: String, requestID: String? = nil, resource: String? = nil, operation: String) {
        self.status = status
        self.code = code
        self.message = message
        self.requestID = requestID
        self.resource = resource
        self.operation = operation
    }

    /// Decodes an error body. Only code, message, request id and resource are kept: S3 can echo
    /// the string to sign and the provided signature, which must never reach a log.
    package static func decode(status: Int, body: [UInt8], headers: [String: String], operation: String) -> S3Error {
        let requestID = headers["x-amz-request-id"]
        if !body.isEmpty, let root = try? XMLElement.parse(body), root.name == "Error" {
            return S3Error(status: status, code: root.string("Code") ?? "HTTP\(status)",
                           message: root.string("Message") ?? "", requestID: root.string("RequestId") ?? requestID,
                           resource: root.string("Resource") ?? root.string("Key") ?? root.string("BucketName"),
                           operation: operation)
        }
        let code: String
        switch status {
        case 301: code = "PermanentRedirect"
        case 304: code = "NotModified"
        case 400: code = "BadRequest"
        case 403: code = "AccessDenied"
        case 404: code = "NotFound"
        case 409: code = "Conflict"
        case 412: code = "PreconditionFailed"
        case 416: code = "InvalidRange"
        case 500: code = "InternalError"
        case 503: code = "ServiceUnavailable"
        default: code = "HTTP\(status)"
        }
        return S3Error(status: status, code: code, message: "", requestID: requestID, operation: operation)
    }

    public var isNotFound: Bool { status == 404 || code == "NoSuchKey" || code == "NoSuchBucket" || code == "NotFound" }

    /// Server-side trouble worth another try; never a 4xx.
    public var retryable: Bool {
        [500, 502, 503, 504].contains(status) || (status >= 500 && (code == "SlowDown" || code == "InternalError"))
    }

    /// A one-line explanation of the likely cause, for the errors operators hit most.
    public var hint: String? {
        switch code {
        case "SignatureDoesNotMatch":
            return "the secret key does not match the access key id (wrong secret, or credentials from another profile/store), or something between here and the store rewrote the request (proxy, path-style vs virtual-hosted addressing)"
        case "InvalidAccessKeyId":
            return "this access key id does not exist on this endpoint: check which credentials were picked up (--profile, AWS_* variables, --credentials-dir) and --endpoint"
        case "RequestTimeTooSkewed":
            return "this machine's clock differs from the object store's by more than 15 minutes; fix the clock (NTP) and retry"
        case "NoSuchBucket":
            return "the bucket does not exist on this endpoint (check the bucket name and --endpoint)"
        case "AccessDenied" where status == 403:
            return "the credentials are valid but not allowed to do this (bucket policy or user permissions)"
        case "PermanentRedirect", "AuthorizationHeaderMalformed":
            return "the bucket lives in another region or needs other addressing: check --region and --path-style"
        case "XAmzContentSHA256Mismatch", "BadDigest":
            return "the body changed in transit or on disk while it was being sent"
        default:
            return nil
        }
    }

    public var description: String {
        var s = "\(operation): \(status) \(code)"
        if !message.isEmpty { s += ": \(message)" }
        if let id = requestID { s += " (request id \(id))" }
        if let hint { s += "\n  likely cause: \(hint)" }
        return s
    }
}

/// Data that arrived wrong: short, long, or not matching its checksum.
public struct IntegrityError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var detail: String
    public var description: String { "\(operation): integrity check failed: \(detail)" }
}

/// The object changed (its ETag differs) between the parts of a resumed download.
public struct ObjectChangedError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var description: String { "\(operation): the object changed while it was being downloaded" }
}

import Foundation
import HTTP
import Hashing
import SigV4
import Support
import Logging

/// drctl's S3 client: SigV4 signing (written here) over libcurl, path-style for RGW.
/// Bodies are streamed; nothing holds a whole object in memory.
public final class S3Client: Sendable {
    public let config: S3Configuration
    let transport: any HTTPTransport
    let signer: SigV4Signer
    let logger: Logger
    let clock: @Sendable () -> Date

    public init(config: S3Configuration, transport: (any HTTPTransport)? = nil, logger: Logger = Logger(label: "drctl.s3"),
                clock: @escaping @Sendable () -> Date = { Date() }) {
        self.config = config
        self.transport = transport ?? CurlTransport(tls: config.tls, timeouts: config.timeouts)
        self.signer = SigV4Signer(credentials: config.credentials, region: config.region, service: "s3")
        self.logger = logger
        self.clock = clock
    }

    // MARK: request plumbing

    struct Call {
        var method: String
        var bucket: String?
        var key: String?
        var query: [(name: String, value: String)] = []
        var headers: [(name: String, value: String)] = []
        var body: HTTPBody = .empty
        var payloadHash = SigV4Signer.emptyPayloadHash

        var operation: String {
            let target = bucket.map { b in key.map { "s3://\(b)/\($0)" } ?? "s3://\(b)" } ?? "s3://"
            return "\(method) \(target)"
        }
    }

    func url(for call: Call, query: [(name: String, value: String)]) -> String {
        let ep = config.endpoint
        let q = SigV4Signer.canonicalQuery(query)
        return "\(ep.scheme)://\(ep.hostHeader(bucket: call.bucket))\(ep.encodedPath(bucket: call.bucket, key: call.key))" + (q.isEmpty ? "" : "?\(q)")
    }

    /// One signed attempt. Non-2xx responses become `S3Error`.
    func send(_ call: Call, handler: HTTPResponseHandler) throws -> HTTPResponse {
        let ep = config.endpoint
        var headers: [(name: String, value: String)] = [("Host", ep.hostHeader(bucket: call.bucket))] + call.headers
        let request = SigV4Request(method: call.method, encodedPath: ep.encodedPath(bucket: call.bucket, key: call.key),
                                   query: call.query, headers: headers)
        headers += signer.signHeaders(request, payloadHash: call.payloadHash, date: clock()).parameters
        let started = Date()
        var http = HTTPRequest(method: call.method, url: url(for: call, query: call.query), headers: headers, body: call.body)
        http.largeResponse = call.method == "GET" && call.key != nil && !call.query.contains { ["uploadId", "tagging", "retention", "legal-hold", "acl"].contains($0.name) }
        let response = try transport.perform(http, handler: handler)
        logger.debug("\(call.operation) -> \(response.status) in \(Int(Date().timeIntervalSince(started) * 1000)) ms")
        guard (200..<300).contains(response.status) else {
            throw S3Error.decode(status: response.status, body: response.errorBody, headers: response.headers, operation: call.operation)
        }
        return response
    }

    /// A call with a small in-memory response, retried as the policy allows.
    func sendCollecting(_ call: Call) throws -> (HTTPResponse, [UInt8]) {
        try config.retry.run(call.operation, logger: logger) { _ in
            let h = CollectingHandler()
            let r = try send(call, handler: h)
            return (r, h.data)
        }
    }

    // MARK: buckets

    public func createBucket(_ bucket: String) throws {
        var call = Call(method: "PUT", bucket: bucket, key: nil)
        // us-east-1 is the default and AWS rejects it as an explicit constraint.
        if config.region != "us-east-1" && config.endpoint.host.hasSuffix("amazonaws.com") {
            let body = Array("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>\(xmlEscape(config.region))</LocationConstraint></CreateBucketConfiguration>".utf8)
            call.body = .bytes(body)
            call.payloadHash = Hash.sha256(body).hex
        }
        _ = try sendCollecting(call)
    }

    /// True if the bucket exists and is reachable with these credentials; false if it does not exist.
    public func bucketExists(_ bucket: String) throws -> Bool {
        do {
            _ = try sendCollecting(Call(method: "HEAD", bucket: bucket, key: nil))
            return true
        } catch let e as S3Error where e.status == 404 {
            return false
        }
    }

    // MARK: listing

    /// One ListObjectsV2 page. Keys are requested URL-encoded (`encoding-type=url`) so that keys
    /// with characters XML 1.0 cannot carry survive, and decoded here.
    public func listObjectsPage(bucket: String, prefix: String = "", delimiter: String? = nil, startAfter: String? = nil,
                                continuationToken: String? = nil, maxKeys: Int = 1000) throws -> ListPage {
        var query: [(name: String, value: String)] = [("list-type", "2"), ("encoding-type", "url"), ("max-keys", String(maxKeys))]
        if !prefix.isEmpty { query.append(("prefix", prefix)) }
        if let delimiter { query.append(("delimiter", delimiter)) }
        if let startAfter, !startAfter.isEmpty { query.append(("start-after", startAfter)) }
        if let continuationToken { query.append(("continuation-token", continuationToken)) }
        let (_, body) = try sendCollecting(Call(method: "GET", bucket: bucket, key: nil, query: query))
        return try S3Responses.listPage(body)
    }

    /// Every page under `prefix`, in key order, handed to `page` as it arrives.
    public func listObjects(bucket: String, prefix: String = "", delimiter: String? = nil, startAfter: String? = nil,
                            page: (ListPage) throws -> Void) throws {
        var token: String?
        repeat {
            let p = try listObjectsPage(bucket: bucket, prefix: prefix, delimiter: delimiter,
                                        startAfter: token == nil ? startAfter : nil, continuationToken: token)
            try page(p)
            token = p.isTruncated ? p.nextContinuationToken : nil
        } while token != nil
    }

    // MARK: objects

    public func headObject(_ url: S3URL) throws -> ObjectInfo {
        let (r, _) = try sendCollecting(Call(method: "HEAD", bucket: url.bucket, key: url.key))
        guard let size = r.header("content-length").flatMap({ Int64($0) }) else {
            throw S3ResponseError.malformed("HEAD \(url) without Content-Length")
        }
        return ObjectInfo(key: url.key, size: size, etag: stripQuotes(r.header("etag") ?? ""),
                          lastModified: r.header("last-modified").flatMap(HTTPDate.parse), contentType: r.header("content-type"),
                          versionID: r.header("x-amz-version-id").flatMap { $0 == "null" ? nil : $0 }, lock: ObjectLockState(headers: r))
    }

    /// Streams an object (or a byte range of it) to `consumer`. A connection that breaks
    /// mid-body is resumed from the next byte with `If-Match` on the ETag, so two versions of an
    /// object are never spliced; lengths are always checked, and the MD5 too where the ETag is one.
    @discardableResult
    public func getObject(_ url: S3URL, range: ClosedRange<Int64>? = nil, progress: TransferProgress? = nil,
                          consumer: @escaping (UnsafeRawBufferPointer) throws -> Void) throws -> ObjectInfo {
        let state = GetState(url: url, range: range, consumer: consumer, progress: progress)
        try config.retry.run("GET \(url)", logger: logger) { _ in
            var call = Call(method: "GET", bucket: url.bucket, key: url.key)
            if let r = state.nextRange { call.headers.append(("Range", r)) }
            if state.received > 0, !state.etag.isEmpty { call.headers.append(("If-Match", "\"\(state.etag)\"")) }
            do {
                _ = try send(call, handler: state)
            } catch let e as S3Error where e.status == 412 {
                throw ObjectChangedError(operation: "GET \(url)")
            }
            try state.finish()
        }
        return state.info
    }

    /// Downloads to `path` through a temporary file beside it, renamed into place only when
    /// complete and verified. Refuses to replace an existing file unless `overwrite`.
    @discardableResult
    public func download(_ url: S3URL, to path: String, overwrite: Bool = false, progress: TransferProgress? = nil) throws -> ObjectInfo {
        if !overwrite && FileManager.default.fileExists(atPath: path) {
            throw LocalError("\(path) exists; refusing to overwrite it (use --force)")
        }
        let tmp = path + ".drctl-partial-\(getpid())"
        defer { unlink(tmp) }
        var restarts = 0
        while true {
            let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw LocalError("cannot create \(tmp): \(String(cString: strerror(errno)))") }
            do {
                defer { close(fd) }
                var written: Int64 = 0, flushed: Int64 = 0
                let info = try getObject(url, progress: progress) { chunk in
                    try writeAll(fd, chunk, path: tmp)
                    written += Int64(chunk.count)
                    // Start writeback as we go (and drop the pages once clean), so the final
                    // fsync waits for the tail only and a large restore does not fill the page cache.
                    if written - flushed >= writebackWindow {
                        posix_fadvise(fd, off_t(flushed), off_t(written - flushed), POSIX_FADV_DONTNEED)
                        flushed = written
                    }
                }
                guard fsync(fd) == 0 else { throw LocalError("fsync \(tmp): \(String(cString: strerror(errno)))") }
                guard rename(tmp, path) == 0 else { throw LocalError("rename \(tmp) to \(path): \(String(cString: strerror(errno)))") }
                return info
            } catch where (error is ObjectChangedError || error is IntegrityError) && restarts < 2 {
                restarts += 1
                logger.warning("\(error); downloading \(url) again from the start")
            }
        }
    }

    /// PUT of a small in-memory body, with `Content-MD5` so the store verifies it too.
    @discardableResult
    /// `ifAbsent`: `If-None-Match: *`, so a store that honours it answers 412 PreconditionFailed
    /// instead of replacing an object already there.
    public func putObject(_ url: S3URL, bytes: [UInt8], contentType: String? = nil, retention: (mode: String, until: Date)? = nil,
                          ifAbsent: Bool = false) throws -> ObjectInfo {
        let md5 = Hash.md5(bytes)
        var call = Call(method: "PUT", bucket: url.bucket, key: url.key, body: .bytes(bytes), payloadHash: Hash.sha256(bytes).hex)
        call.headers.append(("Content-MD5", md5.base64))
        if ifAbsent { call.headers.append(("If-None-Match", "*")) }
        if let contentType { call.headers.append(("Content-Type", contentType)) }
        if let retention {
            call.headers += [("x-amz-object-lock-mode", retention.mode), ("x-amz-object-lock-retain-until-date", RFC3339.formatSeconds(retention.until))]
        }
        let (r, _) = try sendCollecting(call)
        let etag = stripQuotes(r.header("etag") ?? "")
        try checkETag(etag, md5: md5.hex, operation: call.operation)
        return ObjectInfo(key: url.key, size: Int64(bytes.count), etag: etag, contentType: contentType)
    }

    /// Uploads a file, in parallel parts when it is larger than the multipart threshold.
    /// The body is streamed from disk (`UNSIGNED-PAYLOAD`, so it is read once) and its MD5 is
    /// computed on the way out and checked against the ETag the store returns.
    @discardableResult
    public func upload(file path: String, to url: S3URL, contentType: String? = nil, progress: TransferProgress? = nil) throws -> ObjectInfo {
        var st = stat()
        guard stat(path, &st) == 0 else { throw LocalError("cannot read \(path): \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw LocalError("\(path) is not a regular file") }
        let size = Int64(st.st_size)
        if size > config.multipartThreshold {
            return try MultipartUpload(client: self, file: path, size: size, url: url, contentType: contentType, progress: progress).run()
        }
        let meter = ProgressMeter(total: size, progress: progress)
        return try config.retry.run("PUT \(url)", logger: logger) { _ in
            var call = Call(method: "PUT", bucket: url.bucket, key: url.key, body: .file(path: path, offset: 0, length: size),
                            payloadHash: SigV4Signer.unsignedPayload)
            if let contentType { call.headers.append(("Content-Type", contentType)) }
            let h = UploadHashingHandler(meter: meter)
            let r = try send(call, handler: h)
            let etag = stripQuotes(r.header("etag") ?? "")
            try checkETag(etag, md5: h.finish(), operation: call.operation)
            return ObjectInfo(key: url.key, size: size, etag: etag, contentType: contentType)
        }
    }

    func checkETag(_ etag: String, md5: String, operation: String) throws {
        // An encrypted object's ETag is not its MD5; only a 32-hex ETag is compared.
        if etag.count == 32, etag.allSatisfy(\.isHexDigit), etag.lowercased() != md5 {
            throw IntegrityError(operation: operation, detail: "ETag \(etag) does not match the MD5 of the bytes sent (\(md5))")
        }
    }

    /// Multipart uploads begun and neither completed nor aborted (their parts use space).
    public func listMultipartUploads(bucket: String, prefix: String = "") throws -> [(key: String, uploadID: String)] {
        var query: [(name: String, value: String)] = [("uploads", "")]
        if !prefix.isEmpty { query.append(("prefix", prefix)) }
        let (_, body) = try sendCollecting(Call(method: "GET", bucket: bucket, key: nil, query: query))
        return try S3Responses.multipartUploads(body)
    }

    public func deleteObject(_ url: S3URL) throws {
        _ = try sendCollecting(Call(method: "DELETE", bucket: url.bucket, key: url.key))
    }

    /// Deletes keys in batches of 1,000 (S3's DeleteObjects limit). Returns the keys the store
    /// refused, with its reasons; a key that did not exist counts as deleted, as in S3.
    public func deleteObjects(bucket: String, keys: [String]) throws -> [DeleteFailure] {
        try deleteObjects(bucket: bucket, versions: keys.map { ObjectVersion(key: $0) })
    }

    /// Deletes exact versions where given (on a versioned bucket a delete without one only adds
    /// a delete marker and keeps the data).
    public func deleteObjects(bucket: String, versions: [ObjectVersion]) throws -> [DeleteFailure] {
        var failures: [DeleteFailure] = []
        var start = 0
        while start < versions.count {
            let batch = versions[start..<min(start + 1000, versions.count)]
            start += batch.count
            var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>"
            for v in batch {
                xml += "<Object><Key>\(xmlEscape(v.key))</Key>\(v.versionID.map { "<VersionId>\(xmlEscape($0))</VersionId>" } ?? "")</Object>"
            }
            xml += "</Delete>"
            let body = Array(xml.utf8)
            let call = Call(method: "POST", bucket: bucket, key: nil, query: [("delete", "")],
                            headers: [("Content-MD5", Hash.md5(body).base64), ("Content-Type", "application/xml")],
                            body: .bytes(body), payloadHash: Hash.sha256(body).hex)
            let (_, response) = try sendCollecting(call)
            failures += try S3Responses.deleteFailures(response, operation: call.operation)
        }
        return failures
    }

    /// A presigned URL for `method` on `url`, valid for `expires` seconds (at most 7 days).
    public func presign(_ url: S3URL, method: String = "GET", expires: Int) throws -> String {
        guard (1...604_800).contains(expires) else { throw ConfigError("presigned URL expiry must be between 1 second and 7 days") }
        let call = Call(method: method, bucket: url.bucket, key: url.key)
        let ep = config.endpoint
        let request = SigV4Request(method: method, encodedPath: ep.encodedPath(bucket: url.bucket, key: url.key),
                                   headers: [("host", ep.hostHeader(bucket: url.bucket))])
        let signed = signer.presign(request, expires: expires, date: clock())
        return self.url(for: call, query: signed.parameters)
    }
}

import Foundation
import Hashing
import Support
import Testing
@testable import ObjectStore
import HTTP
import TestSupport
import Storage

/// drctl's S3 client against a real Ceph RGW.
@Suite struct S3IntegrationTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    static let oddKeys = [
        "with space/and more spaces.txt",
        "unicode/ሴ/日本語/é-ü-ß.bin",
        "punct/+ = & % ~ ! ' ( ) *",
        "punct/plus+and space",
        "percent/%20not-an-escape%2F",
        "double//slash",
        "//leading-double-slash",
        "trailing/slash/",
        "dot/./segment",
        "x" + String(repeating: "k", count: 200),
    ]

    /// `If-None-Match: *` on a put, as a slot claim uses it: RGW either honours it (the second
    /// create is refused, the first object stays) or the driver finds out with its probe and
    /// says it cannot (nil), never replacing the object either way.
    @Test func aConditionalCreateOnRGWNeverReplaces() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "create")
        let store = S3Storage(client: s3, bucket: bucket)
        let first = try store.create("drctl/slots/j/1.json", bytes: [1], contentType: nil)
        let second = try store.create("drctl/slots/j/1.json", bytes: [2], contentType: nil)
        print("RGW \(first == nil ? "does not honour" : "honours") If-None-Match: * on PUT")
        #expect((first == true && second == false) || (first == nil && second == nil), "\(String(describing: first)) \(String(describing: second))")
        if first == true { #expect(try store.read("drctl/slots/j/1.json") == [1]) }
        #expect(try store.listAll(prefix: "drctl/slots/j/").map(\.key).allSatisfy { !$0.contains("probe") }, "the probe is removed")
    }

    @Test func oddKeysRoundTrip() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "odd")
        for (i, key) in Self.oddKeys.enumerated() {
            try s3.putObject(S3URL(bucket: bucket, key: key), bytes: Array("body \(i) of \(key)".utf8))
        }
        var listed: [String] = []
        try s3.listObjects(bucket: bucket) { listed += $0.objects.map(\.key) }
        #expect(Set(listed) == Set(Self.oddKeys))
        #expect(listed == listed.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        for (i, key) in Self.oddKeys.enumerated() {
            var got: [UInt8] = []
            let info = try s3.getObject(S3URL(bucket: bucket, key: key)) { got += $0 }
            #expect(String(decoding: got, as: UTF8.self) == "body \(i) of \(key)", "key \(key)")
            #expect(info.etag == Hash.md5(got).hex)
            let head = try s3.headObject(S3URL(bucket: bucket, key: key))
            #expect(head.size == Int64(got.count))
        }
        // Prefix listing with a key that contains encoded-looking text and spaces.
        let page = try s3.listObjectsPage(bucket: bucket, prefix: "punct/plus+and")
        #expect(page.objects.map(\.key) == ["punct/plus+and space"])
        let failures = try s3.deleteObjects(bucket: bucket, keys: Self.oddKeys)
        #expect(failures.isEmpty)
        let after = try s3.listObjectsPage(bucket: bucket)
        #expect(after.objects.isEmpty)
    }

    @Test func listingAcrossPagesWithPrefixDelimiterAndStartAfter() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "list")
        var keys: [String] = []
        for d in ["a", "b"] { for i in 0..<1300 { keys.append("p/\(d)/\(String(format: "%05d", i))") } }
        keys += ["p/top.txt", "q/other"]
        let workers = 8
        let errors = ErrorBox()
        let allKeys = keys
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for k in stride(from: w, to: allKeys.count, by: workers) {
                do { try s3.putObject(S3URL(bucket: bucket, key: allKeys[k]), bytes: []) } catch { errors.add(error) }
            }
        }
        #expect(errors.all.isEmpty)

        var pages = 0
        var all: [String] = []
        try s3.listObjects(bucket: bucket, prefix: "p/") { pages += 1; all += $0.objects.map(\.key) }
        #expect(all.count == 2601)
        #expect(pages == 3)
        #expect(all == keys.filter { $0.hasPrefix("p/") }.sorted())

        var prefixes: [String] = []
        var direct: [String] = []
        try s3.listObjects(bucket: bucket, prefix: "p/", delimiter: "/") { prefixes += $0.commonPrefixes; direct += $0.objects.map(\.key) }
        #expect(prefixes == ["p/a/", "p/b/"])
        #expect(direct == ["p/top.txt"])

        var rest: [String] = []
        try s3.listObjects(bucket: bucket, prefix: "p/", startAfter: "p/b/01000") { rest += $0.objects.map(\.key) }
        #expect(rest.first == "p/b/01001")
        #expect(rest.count == 299 + 1)

        // Parallel listing of disjoint prefixes returns exactly the serial listing, in order,
        // including objects that sort between prefixes ("p/a.txt" < "p/a/" < "p/a0").
        for k in ["p/a.txt", "p/a0", "p/b", "p/c//d", "p/c/", "p/zz"] { try s3.putObject(S3URL(bucket: bucket, key: k), bytes: []) }
        keys += ["p/a.txt", "p/a0", "p/b", "p/c//d", "p/c/", "p/zz"]
        var serial: [String] = [], parallel: [String] = []
        try s3.listObjects(bucket: bucket, prefix: "p/") { serial += $0.objects.map(\.key) }
        try s3.listObjectsParallel(bucket: bucket, prefix: "p/", parallelism: 3) { parallel += $0.objects.map(\.key) }
        #expect(serial.count == 2607)
        #expect(parallel == serial)
        var whole: [String] = []
        try s3.listObjectsParallel(bucket: bucket) { whole += $0.objects.map(\.key) }
        // From the bucket root the fan-out opens p/ and q/ further; the order is still exact.
        var deep: [String] = []
        try s3.listObjectsParallel(bucket: bucket, prefix: "", parallelism: 8) { deep += $0.objects.map(\.key) }
        #expect(deep == whole)
        #expect(whole == keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })

        // Many sibling directories are read as a few key ranges; objects that sort between them
        // (d07.x, d07- before d07/, d15 without a slash) stay in their place and are not duplicated.
        var rkeys: [String] = []
        for d in 0..<30 { for k in 0..<5 { rkeys.append(String(format: "r/d%02d/k%d", d, k)) } }
        rkeys += ["r/d07.x", "r/d07-", "r/d15", "r/zz"]
        let rall = rkeys
        DispatchQueue.concurrentPerform(iterations: 8) { w in
            for i in stride(from: w, to: rall.count, by: 8) {
                do { try s3.putObject(S3URL(bucket: bucket, key: rall[i]), bytes: []) } catch { errors.add(error) }
            }
        }
        #expect(errors.all.isEmpty)
        keys += rkeys
        var rserial: [String] = [], rparallel: [String] = []
        try s3.listObjects(bucket: bucket, prefix: "r/") { rserial += $0.objects.map(\.key) }
        try s3.listObjectsParallel(bucket: bucket, prefix: "r/", parallelism: 2) { rparallel += $0.objects.map(\.key) }
        #expect(rserial.count == rkeys.count)
        #expect(rparallel == rserial)

        // Small pages: continuation tokens chain correctly.
        var token: String?
        var small: [String] = []
        repeat {
            let p = try s3.listObjectsPage(bucket: bucket, prefix: "p/a/000", continuationToken: token, maxKeys: 7)
            small += p.objects.map(\.key)
            token = p.isTruncated ? p.nextContinuationToken : nil
        } while token != nil
        #expect(small.count == 100)
        _ = try s3.deleteObjects(bucket: bucket, keys: keys)
    }

    @Test func multipartUploadAndResumedRangedDownload() throws {
        let proxy = try FaultProxy(upstreamPort: rgw.port)
        let s3 = try rgw.client(endpoint: proxy.endpoint) { c in
            c.multipartThreshold = 8 << 20
            c.partSize = 8 << 20
        }
        let bucket = try rgw.bucket(s3, "mpu")
        let src = tempPath("64m.bin"), dst = tempPath("64m.out")
        defer { unlink(src); unlink(dst) }
        try pseudoRandomFile(src, size: 64 << 20, seed: 42)
        let url = S3URL(bucket: bucket, key: "base/data.tar")

        let info = try s3.upload(file: src, to: url)
        #expect(info.size == 64 << 20)
        #expect(info.etag.hasSuffix("-8"))
        #expect(try proxy.requests().filter { $0.method == "PUT" && $0.path.contains("partNumber=") }.count == 8)
        #expect(try s3.listMultipartUploads(bucket: bucket).isEmpty)

        // The connection breaks twice mid-body; the download resumes where it stopped.
        try proxy.inject("cut", count: 1, method: "GET", afterBytes: 5_000_000)
        try proxy.inject("cut", count: 1, method: "GET", afterBytes: 20_000_000)
        try s3.download(url, to: dst)
        #expect(try sha256(file: dst) == sha256(file: src))
        let ranges = try proxy.requests().filter { $0.method == "GET" && $0.path.hasSuffix("/base/data.tar") }.map(\.range)
        #expect(ranges.count == 3)
        #expect(ranges[0] == nil)
        let resumedAt = ranges.dropFirst().compactMap { $0.flatMap { Int64($0.dropFirst(6).prefix { $0 != "-" }) } }
        #expect(resumedAt.count == 2 && resumedAt[0] > 0 && resumedAt[1] > resumedAt[0])

        // A ranged read returns exactly that slice.
        let range: ClosedRange<Int64> = 10_000_000...10_999_999
        var slice: [UInt8] = []
        try s3.getObject(url, range: range) { slice += $0 }
        let fh = try FileHandle(forReadingFrom: URL(fileURLWithPath: src))
        try fh.seek(toOffset: UInt64(range.lowerBound))
        let expected = try fh.read(upToCount: range.count)!
        try fh.close()
        #expect(slice == Array(expected))
    }

    @Test func failedMultipartUploadIsAborted() throws {
        let proxy = try FaultProxy(upstreamPort: rgw.port)
        let s3 = try rgw.client(endpoint: proxy.endpoint, retry: RetryPolicy(maxAttempts: 2, baseDelay: 0.01, maxDelay: 0.02)) { c in
            c.multipartThreshold = 5 << 20
            c.partSize = 5 << 20
            c.concurrency = 2
        }
        let bucket = try rgw.bucket(s3, "abort")
        let src = tempPath("12m.bin")
        defer { unlink(src) }
        try pseudoRandomFile(src, size: 12 << 20, seed: 7)
        // Every part upload fails more often than the retry policy allows.
        try proxy.inject("503", count: 50, method: "PUT")
        #expect(throws: S3Error.self) { try s3.upload(file: src, to: S3URL(bucket: bucket, key: "big")) }
        #expect(try s3.listMultipartUploads(bucket: bucket).isEmpty)
        #expect(throws: S3Error.self) { try s3.headObject(S3URL(bucket: bucket, key: "big")) }
    }

    @Test func resumedDownloadRestartsWhenTheObjectChanges() throws {
        let proxy = try FaultProxy(upstreamPort: rgw.port)
        let direct = try rgw.client()
        let bucket = try rgw.bucket(direct, "change")
        let url = S3URL(bucket: bucket, key: "obj")
        let v1 = [UInt8](repeating: 1, count: 3 << 20), v2 = [UInt8](repeating: 2, count: 3 << 20)
        try direct.putObject(url, bytes: v1)
        // The first GET is cut; before the resume, someone rewrites the object.
        let hook = HookTransport(inner: CurlTransport()) { request, n in
            if request.method == "GET" && n == 2 { _ = try? direct.putObject(url, bytes: v2) }
        }
        let s3 = S3Client(config: try rgw.client(endpoint: proxy.endpoint).config, transport: hook)
        try proxy.inject("cut", count: 1, method: "GET", afterBytes: 1 << 20)
        let dst = tempPath("changed")
        defer { unlink(dst) }
        try s3.download(url, to: dst)
        // Never a splice of v1 and v2: the whole of v2.
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: dst))) == v2)
    }

    @Test func presignedURLsWorkWithCurl() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "presign")
        let key = "dir/with space+plus/ሴ.txt"
        try s3.putObject(S3URL(bucket: bucket, key: key), bytes: Array("presigned body".utf8))
        let url = try s3.presign(S3URL(bucket: bucket, key: key), expires: 300)
        #expect(url.contains("X-Amz-Signature="))
        let out = tempPath("presigned")
        defer { unlink(out) }
        let (status, msg) = try run("/usr/bin/curl", ["-sSf", "-o", out, url])
        #expect(status == 0, "\(msg)")
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "presigned body")

        // A presigned PUT, uploaded by curl, then read back with the client.
        let putURL = try s3.presign(S3URL(bucket: bucket, key: "uploaded by curl"), method: "PUT", expires: 300)
        let src = tempPath("src")
        defer { unlink(src) }
        try Data("from curl".utf8).write(to: URL(fileURLWithPath: src))
        let (putStatus, putMsg) = try run("/usr/bin/curl", ["-sSf", "-T", src, putURL])
        #expect(putStatus == 0, "\(putMsg)")
        var got: [UInt8] = []
        try s3.getObject(S3URL(bucket: bucket, key: "uploaded by curl")) { got += $0 }
        #expect(String(decoding: got, as: UTF8.self) == "from curl")

        // A tampered signature is refused.
        let bad = url.replacingOccurrences(of: "X-Amz-Expires=300", with: "X-Amz-Expires=301")
        let (badStatus, _) = try run("/usr/bin/curl", ["-sf", "-o", "/dev/null", bad])
        #expect(badStatus != 0)
    }

    @Test func wrongSecretFailsClearlyWithoutPrintingIt() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "secret")
        let wrong = "Wr0ngSecretValue/ThatMustNeverBePrinted+xyz"
        var env = rgw.environment
        env["AWS_SECRET_ACCESS_KEY"] = wrong
        for args in [["s3", "ls", "s3://\(bucket)"], ["s3", "stat", "s3://\(bucket)/k"], ["s3", "get", "s3://\(bucket)/k", "-"], ["s3", "ls", "-v", "s3://\(bucket)"]] {
            let (status, output) = try run(drctlBinary, args, env: env)
            #expect(status == 1, "\(args): \(output)")
            #expect(output.contains("SignatureDoesNotMatch") || output.contains("403"), "\(args): \(output)")
            #expect(!output.contains(wrong) && !output.contains(URIEncoding.encode(wrong)), "\(args) printed the secret")
            #expect(!output.contains(rgw.secretKey))
        }
        let (_, out) = try run(drctlBinary, ["s3", "ls", "s3://\(bucket)"], env: env)
        #expect(out.contains("likely cause"))
    }

    @Test func retriesServerErrorsAndResetsButNot4xx() throws {
        let proxy = try FaultProxy(upstreamPort: rgw.port)
        let s3 = try rgw.client(endpoint: proxy.endpoint)
        let bucket = try rgw.bucket(s3, "retry")
        let url = S3URL(bucket: bucket, key: "k")

        try proxy.inject("503", count: 3, method: "PUT")
        try s3.putObject(url, bytes: Array("x".utf8))
        #expect(try proxy.requests().filter { $0.method == "PUT" && $0.path.hasSuffix("/k") }.count == 4)

        try proxy.inject("slowdown", count: 2, method: "GET")
        try proxy.inject("reset", count: 2, method: "GET")
        var got: [UInt8] = []
        try s3.getObject(url) { got += $0 }
        #expect(got == Array("x".utf8))
        #expect(try proxy.requests().filter { $0.method == "GET" }.count == 5)

        // A 4xx is final: exactly one request.
        let before = try proxy.requests().count
        #expect(throws: S3Error.self) { try s3.headObject(S3URL(bucket: bucket, key: "missing")) }
        #expect(try proxy.requests().count == before + 1)

        // Retries are bounded: a storm longer than the policy ends in the 503 after exactly
        // maxAttempts requests, not a hang.
        let headsBefore = try proxy.requests().filter { $0.method == "HEAD" }.count
        try proxy.inject("503", count: 20, method: "HEAD")
        #expect { try s3.headObject(url) } throws: { ($0 as? S3Error)?.status == 503 }
        #expect(try proxy.requests().filter { $0.method == "HEAD" }.count == headsBefore + s3.config.retry.maxAttempts)
    }

    /// A server that stops sending mid-body (a read timeout): the download resumes and is whole; a 200 whose Content-Length and body both stop short (HTTP sees
    /// nothing wrong) is caught by the MD5 of the ETag: never a silently short file.
    @Test func stalledAndShortBodiesNeverLeaveAShortFile() throws {
        let proxy = try FaultProxy(upstreamPort: rgw.port)
        let s3 = try rgw.client(endpoint: proxy.endpoint) { $0.timeouts = TimeoutOptions(connect: 5, stall: 1) }
        let bucket = try rgw.bucket(s3, "stall")
        let url = S3URL(bucket: bucket, key: "obj")
        let body = (0..<(2 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try s3.putObject(url, bytes: body)
        let dst = tempPath("stalled")
        defer { unlink(dst) }

        // The server stays silent for a minute: only drctl's stall timeout (1 s here) ends it
        // (the proxy logs the client giving up: ABANDONED during the silence, or LEFT when a slow
        // upstream already made it give up before), and the download resumes and is whole.
        try proxy.inject("stallbody", count: 1, method: "GET", afterBytes: 512 << 10, seconds: 60)
        let started = Date()
        try s3.download(url, to: dst)
        let elapsed = Date().timeIntervalSince(started)
        // The proxy notices the closed connection on its next poll, which a loaded machine may
        // delay: the proof that drctl gave up itself is that the download ended long before the
        // server's minute of silence did, whole.
        var log = try proxy.requests()
        _ = try waitUntil(50, every: 100_000) {
            log = try proxy.requests()
            return log.contains { $0.method == "ABANDONED" || $0.method == "LEFT" }
        }
        let seen = "after \(String(format: "%.1f", elapsed))s: \(log.filter { $0.method != "PUT" })"
        #expect(elapsed < 30, "drctl gave up on the silent server itself (it stays silent for 60 s), \(seen)")
        #expect(log.filter { $0.method == "GET" }.count >= 2, "a second request after the stall, \(seen)")
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: dst))) == body)
        if log.contains(where: { $0.method == "ABANDONED" }) {
            #expect(log.contains { $0.method == "GET" && $0.range?.hasPrefix("bytes=524288-") == true }, "resumed where the stall began, \(seen)")
        }

        // Short but consistent: to a file, and to memory (how metadata is read).
        for read in [{ try s3.download(url, to: dst); return try Array(Data(contentsOf: URL(fileURLWithPath: dst))) },
                     { var got: [UInt8] = []; try s3.getObject(url) { got += $0 }; return got }] as [() throws -> [UInt8]] {
            unlink(dst)
            try proxy.inject("shortlength", count: 1, method: "GET", afterBytes: 1000)
            do {
                let got = try read()
                #expect(got == body, "a retry after the integrity error gets the whole object")
            } catch {
                #expect("\(error)".contains("MD5"), "\(error)")
                let left = (try? Data(contentsOf: URL(fileURLWithPath: dst)))?.count
                #expect(left == nil || left == body.count, "no short file left behind: \(left ?? 0) bytes")
            }
        }
    }

    /// A clock 20 minutes off (libfaketime, for drctl alone): RGW refuses the signature's time,
    /// and drctl says why and what to fix instead of only relaying a 403.
    @Test func clockSkewIsExplained() throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/faketime"), "install faketime (scripts/install-deps.sh)")
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "skew")
        let (ok, _) = try run("/usr/bin/faketime", ["-f", "+1m", drctlBinary, "s3", "ls", "s3://\(bucket)"], env: rgw.environment)
        #expect(ok == 0, "a minute off is within the allowed skew")
        let (st, out) = try run("/usr/bin/faketime", ["-f", "+20m", drctlBinary, "s3", "ls", "s3://\(bucket)"], env: rgw.environment)
        #expect(st == 1 && out.contains("RequestTimeTooSkewed") && out.contains("clock"), "\(out)")
    }

    @Test func connectionRefusedIsRetriedThenReported() throws {
        let port = try freePort()
        let s3 = try rgw.client(endpoint: "http://127.0.0.1:\(port)", retry: RetryPolicy(maxAttempts: 3, baseDelay: 0.01, maxDelay: 0.02))
        #expect { try s3.headObject(S3URL(bucket: "nobucket", key: "k")) } throws: { e in
            guard let t = e as? TransportError else { return false }
            return t.retryable && t.description.contains("127.0.0.1")
        }
    }
}

final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [Error] = []
    func add(_ e: Error) { lock.withLock { errors.append(e) } }
    var all: [Error] { lock.withLock { errors } }
}

/// Lets a test act between requests (e.g. change an object before a resume).
final class HookTransport: HTTPTransport, @unchecked Sendable {
    let inner: HTTPTransport
    let hook: (HTTPRequest, Int) -> Void
    private var count = 0
    private let lock = NSLock()
    init(inner: HTTPTransport, hook: @escaping (HTTPRequest, Int) -> Void) {
        self.inner = inner
        self.hook = hook
    }
    func perform(_ request: HTTPRequest, handler: HTTPResponseHandler) throws -> HTTPResponse {
        let n = lock.withLock { count += 1; return count }
        hook(request, n)
        return try inner.perform(request, handler: handler)
    }
}

/// HTTPS with a custom CA, and virtual-hosted addressing, against the same RGW.
@Suite struct S3TransportSecurityTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    @Test func httpsWithACustomCABundle() throws {
        let tls = try #require(rgw.tlsEndpoint), ca = try #require(rgw.caBundle)
        let trusted = try rgw.client(endpoint: tls) { $0.tls = TLSOptions(caBundle: ca) }
        let bucket = try rgw.bucket(trusted, "tls")
        try trusted.putObject(S3URL(bucket: bucket, key: "k"), bytes: Array("over https".utf8))
        var got: [UInt8] = []
        try trusted.getObject(S3URL(bucket: bucket, key: "k")) { got += $0 }
        #expect(got == Array("over https".utf8))

        // Verification is on by default: the test CA is unknown to the system store.
        let untrusted = try rgw.client(endpoint: tls)
        #expect { try untrusted.headObject(S3URL(bucket: bucket, key: "k")) } throws: { e in
            guard let t = e as? TransportError else { return false }
            return !t.retryable && (t.description.contains("certificate") || t.description.contains("SSL"))
        }
        let insecure = try rgw.client(endpoint: tls) { $0.tls = TLSOptions(insecure: true) }
        #expect(try insecure.headObject(S3URL(bucket: bucket, key: "k")).size == 10)

        // Through the CLI: --ca-bundle, and a clear error without it.
        let env = rgw.environment
        let (ok, out) = try run(drctlBinary, ["s3", "stat", "--endpoint", tls, "--ca-bundle", ca, "s3://\(bucket)/k"], env: env)
        #expect(ok == 0 && out.contains("Size:          10"), "\(out)")
        let (bad, err) = try run(drctlBinary, ["s3", "stat", "--endpoint", tls, "s3://\(bucket)/k"], env: env)
        #expect(bad == 1 && err.contains("certificate"), "\(err)")
    }

    @Test func virtualHostedAddressing() throws {
        // RGW runs with rgw_dns_name=localhost; curl resolves *.localhost to the loopback.
        let port = URLComponents(string: rgw.endpoint)!.port!
        let pathStyle = try rgw.client()
        let bucket = try rgw.bucket(pathStyle, "vhost")
        let vhost = try rgw.client(endpoint: "http://localhost:\(port)", addressing: .virtualHosted)
        try vhost.putObject(S3URL(bucket: bucket, key: "dir/a b+c"), bytes: Array("virtual".utf8))
        var got: [UInt8] = []
        try pathStyle.getObject(S3URL(bucket: bucket, key: "dir/a b+c")) { got += $0 }
        #expect(got == Array("virtual".utf8))
        let page = try vhost.listObjectsPage(bucket: bucket, prefix: "dir/")
        #expect(page.objects.map(\.key) == ["dir/a b+c"])
        let url = try vhost.presign(S3URL(bucket: bucket, key: "dir/a b+c"), expires: 60)
        #expect(url.hasPrefix("http://\(bucket).localhost:\(port)/dir/a%20b%2Bc?"))
        let (st, body) = try run("/usr/bin/curl", ["-sf", url])
        #expect(st == 0 && body == "virtual", "\(body)")
    }
}

import Foundation
import HTTP
import Hashing
import Support
import Logging

// The state of one transfer: progress, the MD5 of what was sent, and the GET that resumes after a
// broken connection and checks what arrived against the length and ETag the store announced.

/// Progress shared by concurrent part uploads.
final class ProgressMeter: @unchecked Sendable {
    let total: Int64?
    let progress: TransferProgress?
    private let lock = NSLock()
    private var done: Int64 = 0
    init(total: Int64?, progress: TransferProgress?) {
        self.total = total
        self.progress = progress
    }
    func add(_ n: Int) {
        guard let progress else { return }
        let now = lock.withLock { done += Int64(n); return done }
        progress(now, total)
    }
}

final class UploadHashingHandler: HTTPResponseHandler {
    var md5: Digest? = Digest(.md5)
    let meter: ProgressMeter?
    init(meter: ProgressMeter?) { self.meter = meter }
    func body(_ chunk: UnsafeRawBufferPointer) throws {}
    func sent(_ chunk: UnsafeRawBufferPointer) {
        md5?.update(chunk)
        meter?.add(chunk.count)
    }
    func finish() -> String { md5.take()?.finish().hex ?? "" }
}

/// The state of one GET across resumed attempts.
final class GetState: HTTPResponseHandler {
    let url: S3URL
    let range: ClosedRange<Int64>?
    let consumer: (UnsafeRawBufferPointer) throws -> Void
    let progress: TransferProgress?
    /// Bytes delivered to the consumer so far.
    var received: Int64 = 0
    /// Bytes this whole GET will deliver, known from the first response.
    var expected: Int64?
    var etag = ""
    var objectSize: Int64?
    var lastModified: Date?
    var contentType: String?
    var md5: Digest?

    init(url: S3URL, range: ClosedRange<Int64>?, consumer: @escaping (UnsafeRawBufferPointer) throws -> Void, progress: TransferProgress?) {
        self.url = url
        self.range = range
        self.consumer = consumer
        self.progress = progress
    }

    /// The Range header for the next attempt: the caller's range, moved past what already arrived.
    var nextRange: String? {
        let first = (range?.lowerBound ?? 0) + received
        if let range { return "bytes=\(first)-\(range.upperBound)" }
        return received > 0 ? "bytes=\(first)-" : nil
    }

    var operation: String { "GET \(url)" }

    func head(_ r: HTTPResponse) throws {
        guard let length = r.header("content-length").flatMap({ Int64($0) }) else {
            throw IntegrityError(operation: operation, detail: "response without Content-Length")
        }
        let tag = stripQuotes(r.header("etag") ?? "")
        if received > 0 {
            // A resumed request must continue exactly where the last one stopped, on the same object.
            let want = (range?.lowerBound ?? 0) + received
            guard r.status == 206, let cr = r.header("content-range"), parseContentRangeStart(cr) == want else {
                throw IntegrityError(operation: operation, detail: "resumed download did not continue at byte \(want)")
            }
            if !etag.isEmpty && !tag.isEmpty && tag != etag { throw ObjectChangedError(operation: operation) }
            guard received + length == expected else {
                throw IntegrityError(operation: operation, detail: "resumed length \(length) does not add up to \(expected ?? -1)")
            }
            return
        }
        etag = tag
        expected = length
        lastModified = r.header("last-modified").flatMap(HTTPDate.parse)
        contentType = r.header("content-type")
        if range != nil {
            guard r.status == 206 else { throw IntegrityError(operation: operation, detail: "range request answered with \(r.status)") }
            objectSize = r.header("content-range").flatMap(parseContentRangeTotal)
        } else {
            objectSize = length
            let encrypted = r.header("x-amz-server-side-encryption").map { $0 != "AES256" } ?? false
            if tag.count == 32, tag.allSatisfy(\.isHexDigit), !encrypted { md5 = Digest(.md5) }
        }
    }

    func body(_ chunk: UnsafeRawBufferPointer) throws {
        if let expected, received + Int64(chunk.count) > expected {
            throw IntegrityError(operation: operation, detail: "more bytes than the announced \(expected)")
        }
        try consumer(chunk)
        md5?.update(chunk)
        received += Int64(chunk.count)
        progress?(received, expected)
    }

    /// After a transfer that ended without a transport error: a short body is a broken
    /// connection (resumable); a complete one must match its MD5 where known.
    func finish() throws {
        guard let expected else { throw IntegrityError(operation: operation, detail: "no response head") }
        if received < expected {
            throw TransportError(code: -2, message: "\(operation): body ended after \(received) of \(expected) bytes", retryable: true)
        }
        if let digest = md5.take() {
            let sum = digest.finish().hex
            if sum != etag.lowercased() {
                throw IntegrityError(operation: operation, detail: "MD5 \(sum) does not match ETag \(etag)")
            }
        }
    }

    var info: ObjectInfo {
        ObjectInfo(key: url.key, size: objectSize ?? received, etag: etag, lastModified: lastModified, contentType: contentType)
    }
}

// MARK: - helpers

let writebackWindow: Int64 = 16 << 20

func stripQuotes(_ s: String) -> String {
    var t = Substring(s)
    if t.hasPrefix("\"") { t = t.dropFirst() }
    if t.hasSuffix("\"") { t = t.dropLast() }
    return String(t)
}

func parseContentRangeStart(_ s: String) -> Int64? {
    // "bytes 100-199/1000"
    guard let sp = s.firstIndex(of: " "), let dash = s.firstIndex(of: "-") else { return nil }
    return Int64(s[s.index(after: sp)..<dash])
}

func parseContentRangeTotal(_ s: String) -> Int64? {
    guard let slash = s.lastIndex(of: "/") else { return nil }
    return Int64(s[s.index(after: slash)...])
}

/// `2026-11-27T05:31:57.304Z`, as S3 listings write LastModified. Parsed by hand: a listing
/// of many thousands of keys should not pay for a formatter per entry.

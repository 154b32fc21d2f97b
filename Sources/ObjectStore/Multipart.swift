import Foundation
import Hashing
import SigV4
import Support

/// A multipart upload of one file: parts go up in parallel, each streamed from its slice of
/// the file and checked against its own ETag; any failure aborts the upload so no orphaned
/// parts are left behind. Completion is confirmed with HEAD, because RGW may answer
/// CompleteMultipartUpload with an empty ETag (Red Hat BZ 2266579).
struct MultipartUpload {
    let client: S3Client
    let file: String
    let size: Int64
    let url: S3URL
    let contentType: String?
    let progress: TransferProgress?

    var partSize: Int64 {
        // S3 allows 10,000 parts of at least 5 MiB: grow the part size for very large files.
        let minimum = (size + 9_999) / 10_000
        let mib: Int64 = 1 << 20
        return max(client.config.partSize, 5 * mib, (minimum + mib - 1) / mib * mib)
    }

    func run() throws -> ObjectInfo {
        let uploadID = try create()
        do {
            let etags = try uploadParts(uploadID: uploadID)
            try complete(uploadID: uploadID, etags: etags)
            let info = try client.headObject(url)
            guard info.size == size else {
                throw IntegrityError(operation: "PUT \(url)", detail: "store reports \(info.size) bytes after upload, sent \(size)")
            }
            let expected = Self.multipartETag(partMD5s: etags)
            if !info.etag.isEmpty && info.etag != expected {
                throw IntegrityError(operation: "PUT \(url)", detail: "ETag \(info.etag) does not match the parts sent (\(expected))")
            }
            return info
        } catch {
            abort(uploadID: uploadID)
            throw error
        }
    }

    /// S3's multipart ETag: MD5 of the concatenated binary part MD5s, then `-<part count>`.
    static func multipartETag(partMD5s: [String]) -> String {
        var bytes: [UInt8] = []
        for hex in partMD5s {
            var i = hex.startIndex
            while i < hex.endIndex {
                let j = hex.index(i, offsetBy: 2)
                bytes.append(UInt8(hex[i..<j], radix: 16) ?? 0)
                i = j
            }
        }
        return "\(Hash.md5(bytes).hex)-\(partMD5s.count)"
    }

    func create() throws -> String {
        var call = S3Client.Call(method: "POST", bucket: url.bucket, key: url.key, query: [("uploads", "")])
        if let contentType { call.headers.append(("Content-Type", contentType)) }
        let (_, body) = try client.sendCollecting(call)
        guard let id = try S3Responses.uploadID(body) else {
            throw S3ResponseError.malformed("CreateMultipartUpload for \(url) returned no UploadId")
        }
        return id
    }

    func uploadParts(uploadID: String) throws -> [String] {
        let partSize = self.partSize
        let count = Int((size + partSize - 1) / partSize)
        let results = PartResults(count: count)
        let meter = ProgressMeter(total: size, progress: progress)
        let workers = max(1, min(client.config.concurrency, count))
        let client = self.client, url = self.url, file = self.file, size = self.size
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while let index = results.next() {
                let offset = Int64(index) * partSize
                let length = min(partSize, size - offset)
                do {
                    let etag = try client.config.retry.run("PUT \(url) part \(index + 1)", logger: client.logger) { _ in
                        let call = S3Client.Call(method: "PUT", bucket: url.bucket, key: url.key,
                                                 query: [("partNumber", String(index + 1)), ("uploadId", uploadID)],
                                                 body: .file(path: file, offset: offset, length: length),
                                                 payloadHash: SigV4Signer.unsignedPayload)
                        let h = UploadHashingHandler(meter: meter)
                        let r = try client.send(call, handler: h)
                        let md5 = h.finish()
                        let etag = stripQuotes(r.header("etag") ?? "")
                        try client.checkETag(etag, md5: md5, operation: "PUT \(url) part \(index + 1)")
                        return md5
                    }
                    results.set(index, etag)
                } catch {
                    results.fail(error)
                }
            }
        }
        return try results.get()
    }

    func complete(uploadID: String, etags: [String]) throws {
        var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        for (i, e) in etags.enumerated() { xml += "<Part><PartNumber>\(i + 1)</PartNumber><ETag>\"\(e)\"</ETag></Part>" }
        xml += "</CompleteMultipartUpload>"
        let body = Array(xml.utf8)
        let call = S3Client.Call(method: "POST", bucket: url.bucket, key: url.key, query: [("uploadId", uploadID)],
                                 headers: [("Content-Type", "application/xml")], body: .bytes(body), payloadHash: Hash.sha256(body).hex)
        let (_, response) = try client.sendCollecting(call)
        // S3 may report a failed completion inside a 200 response.
        if let error = S3Responses.errorInSuccess(response, operation: "POST \(url) (complete multipart upload)") { throw error }
    }

    func abort(uploadID: String) {
        let call = S3Client.Call(method: "DELETE", bucket: url.bucket, key: url.key, query: [("uploadId", uploadID)])
        do {
            _ = try client.sendCollecting(call)
        } catch {
            client.logger.error("could not abort multipart upload of \(url) (upload id \(uploadID)): \(error); its parts stay billed until a lifecycle rule or `drctl s3 rm` removes them")
        }
    }
}

/// Hands out part indexes to workers and gathers their ETags; the first failure stops the rest.
final class PartResults: @unchecked Sendable {
    private let lock = NSLock()
    private var etags: [String?]
    private var nextIndex = 0
    private var error: Error?

    init(count: Int) { etags = Array(repeating: nil, count: count) }

    func next() -> Int? {
        lock.withLock {
            guard error == nil, nextIndex < etags.count else { return nil }
            defer { nextIndex += 1 }
            return nextIndex
        }
    }

    func set(_ i: Int, _ etag: String) { lock.withLock { etags[i] = etag } }
    func fail(_ e: Error) { lock.withLock { if error == nil { error = e } } }

    func get() throws -> [String] {
        try lock.withLock {
            if let error { throw error }
            return etags.map { $0! }
        }
    }
}

import Foundation
import Support

/// The S3 response documents drctl reads, parsed from bytes with no I/O, so that each can be
/// unit-tested and fuzzed on its own (`drctl-fuzz s3-xml`).
package enum S3Responses {
    /// One ListObjectsV2 page. Keys come URL-encoded when the request asked for `encoding-type=url`.
    package static func listPage(_ body: [UInt8]) throws -> ListPage {
        let root = try XMLElement.parse(body)
        guard root.name == "ListBucketResult" else { throw S3ResponseError.malformed("expected ListBucketResult, got \(root.name)") }
        let encoded = root.string("EncodingType") == "url"
        func decode(_ s: String) -> String { encoded ? URIEncoding.decode(s, plusAsSpace: true) : s }
        var objects: [ObjectInfo] = []
        objects.reserveCapacity(root.children.count)
        for c in root.all("Contents") {
            guard let key = c.string("Key"), let size = c.string("Size").flatMap({ Int64($0) }), size >= 0 else {
                throw S3ResponseError.malformed("listing entry without Key or Size")
            }
            objects.append(ObjectInfo(key: decode(key), size: size, etag: stripQuotes(c.string("ETag") ?? ""),
                                      lastModified: c.string("LastModified").flatMap(RFC3339.parse),
                                      storageClass: c.string("StorageClass")))
        }
        let prefixes = root.all("CommonPrefixes").compactMap { $0.string("Prefix").map(decode) }
        let truncated = root.string("IsTruncated") == "true"
        let token = root.string("NextContinuationToken")
        if truncated && (token ?? "").isEmpty { throw S3ResponseError.malformed("truncated listing without NextContinuationToken") }
        return ListPage(objects: objects, commonPrefixes: prefixes, isTruncated: truncated, nextContinuationToken: token)
    }

    /// ListMultipartUploads: the uploads begun and not completed or aborted.
    package static func multipartUploads(_ body: [UInt8]) throws -> [(key: String, uploadID: String)] {
        let root = try XMLElement.parse(body)
        return root.all("Upload").compactMap { u in
            guard let k = u.string("Key"), let id = u.string("UploadId") else { return nil }
            return (k, id)
        }
    }

    /// CreateMultipartUpload's upload id, nil when the answer has none.
    package static func uploadID(_ body: [UInt8]) throws -> String? {
        guard let id = try XMLElement.parse(body).string("UploadId"), !id.isEmpty else { return nil }
        return id
    }

    /// DeleteObjects (quiet): the keys the store refused. A whole-request `<Error>` is thrown.
    package static func deleteFailures(_ body: [UInt8], operation: String) throws -> [DeleteFailure] {
        let root = try XMLElement.parse(body)
        if root.name == "Error" {
            throw S3Error(status: 200, code: root.string("Code") ?? "Error", message: root.string("Message") ?? "", operation: operation)
        }
        return root.all("Error").map { e in
            DeleteFailure(key: e.string("Key") ?? "?", code: e.string("Code") ?? "?", message: e.string("Message") ?? "")
        }
    }

    /// S3 may report a failed CompleteMultipartUpload inside a 200 response.
    package static func errorInSuccess(_ body: [UInt8], operation: String) -> S3Error? {
        guard !body.isEmpty, let root = try? XMLElement.parse(body), root.name == "Error" else { return nil }
        return S3Error(status: 200, code: root.string("Code") ?? "Error", message: root.string("Message") ?? "",
                       requestID: root.string("RequestId"), operation: operation)
    }
}

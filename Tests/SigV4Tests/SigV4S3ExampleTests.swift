import Foundation
import Testing
@testable import SigV4
import Hashing
import Support

/// The worked examples of AWS's S3 SigV4 documentation ("Examples: Signature Calculations in
/// AWS Signature Version 4", header and query forms). These always run.
struct SigV4S3ExampleTests {
    static let creds = Credentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE",
                                   secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    static let signer = SigV4Signer(credentials: creds, region: "us-east-1")
    static let date = Date(timeIntervalSince1970: 1_369_353_600) // 2013-05-24T00:00:00Z
    static let host = ("host", "examplebucket.s3.amazonaws.com")

    @Test func getObjectWithRange() {
        let req = SigV4Request(method: "GET", encodedPath: "/test.txt", headers: [Self.host, ("Range", "bytes=0-9")])
        let s = Self.signer.signHeaders(req, payloadHash: SigV4Signer.emptyPayloadHash, date: Self.date)
        #expect(s.canonicalRequest == """
            GET
            /test.txt

            host:examplebucket.s3.amazonaws.com
            range:bytes=0-9
            x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            x-amz-date:20130524T000000Z

            host;range;x-amz-content-sha256;x-amz-date
            e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            """)
        #expect(s.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        let auth = s.parameters.first { $0.name == "Authorization" }?.value
        #expect(auth == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func putObject() {
        let body = Array("Welcome to Amazon S3.".utf8)
        let hash = Hash.sha256(body).hex
        #expect(hash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        // `$` is not unreserved: the key `test$file.text` goes on the wire as `test%24file.text`.
        let path = "/" + URIEncoding.encode("test$file.text", keepSlash: true)
        let req = SigV4Request(method: "PUT", encodedPath: path, headers: [
            Self.host, ("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")])
        let s = Self.signer.signHeaders(req, payloadHash: hash, date: Self.date)
        #expect(s.signature == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    @Test func getBucketLifecycle() {
        let req = SigV4Request(method: "GET", encodedPath: "/", query: [("lifecycle", "")], headers: [Self.host])
        let s = Self.signer.signHeaders(req, payloadHash: SigV4Signer.emptyPayloadHash, date: Self.date)
        #expect(s.signature == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    }

    @Test func listObjects() {
        let req = SigV4Request(method: "GET", encodedPath: "/", query: [("max-keys", "2"), ("prefix", "J")], headers: [Self.host])
        let s = Self.signer.signHeaders(req, payloadHash: SigV4Signer.emptyPayloadHash, date: Self.date)
        #expect(s.canonicalRequest.split(separator: "\n")[2] == "max-keys=2&prefix=J")
        #expect(s.signature == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
    }

    @Test func presignedGet() {
        let req = SigV4Request(method: "GET", encodedPath: "/test.txt", headers: [Self.host])
        let s = Self.signer.presign(req, expires: 86400, date: Self.date)
        #expect(s.signature == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
        #expect(s.parameters.last?.name == "X-Amz-Signature")
    }

    @Test func signingKeyIsCachedAndStable() {
        let d = AmzDate(Self.date)
        #expect(Self.signer.signingKey(date: d) == Self.signer.signingKey(date: d))
        #expect(d.long == "20130524T000000Z" && d.short == "20130524")
    }

    @Test func credentialsNeverDescribeTheirSecret() {
        let c = Credentials(accessKeyID: "AK", secretAccessKey: "s3cr3t", sessionToken: "t0k3n")
        #expect(!"\(c)".contains("s3cr3t") && !"\(c)".contains("t0k3n"))
    }
}

import Foundation
import Testing
@testable import ObjectStore
import HTTP
import Hashing
import Support

struct ListParsingTests {
    @Test func decodesURLEncodedKeysAndPrefixes() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><EncodingType>url</EncodingType>
            <Name>b</Name><Prefix>p%2F</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
            <NextContinuationToken>tok/en=</NextContinuationToken>
            <Contents><Key>a%20b%2Bc+d</Key><LastModified>2026-11-27T05:31:57.304Z</LastModified><ETag>&quot;764efa883dda1e11db47671c4a3bbd9e&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>
            <CommonPrefixes><Prefix>p%2Fsub%20dir%2F</Prefix></CommonPrefixes>
            </ListBucketResult>
            """
        let page = try S3Responses.listPage(Array(xml.utf8))
        #expect(page.objects.map(\.key) == ["a b+c d"])
        #expect(page.objects[0].etag == "764efa883dda1e11db47671c4a3bbd9e")
        #expect(page.objects[0].size == 3)
        #expect(page.objects[0].lastModified == Date(timeIntervalSince1970: 1_795_757_517.304))
        #expect(page.commonPrefixes == ["p/sub dir/"])
        #expect(page.isTruncated && page.nextContinuationToken == "tok/en=")
    }

    @Test func rejectsMalformedListings() {
        #expect(throws: S3ResponseError.self) { try S3Responses.listPage(Array("<ListBucketResult><Contents><Key>k</Key></Contents>".utf8)) }
        #expect(throws: S3ResponseError.self) { try S3Responses.listPage(Array("<Error/>".utf8)) }
        #expect(throws: S3ResponseError.self) {
            try S3Responses.listPage(Array("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>".utf8))
        }
    }

}

struct XMLReaderTests {
    @Test func readsWhatS3Sends() throws {
        let doc = """
            \u{FEFF}<?xml version="1.0" encoding="UTF-8"?>
            <!-- a comment --><s3:ListBucketResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/" a='x>y'>
              <s3:Name>b</s3:Name><Empty/><Empty2 k="v" />
              <Key>a &amp; &lt;b&gt; &quot;c&quot; &apos;d&apos; &#65;&#x42;&#x1F600; <![CDATA[<raw> & ]]>end</Key>
            </s3:ListBucketResult>
            """
        let root = try XMLElement.parse(Array(doc.utf8))
        #expect(root.name == "ListBucketResult")
        #expect(root.string("Name") == "b")
        #expect(root.child("Empty")?.text == "" && root.child("Empty2") != nil)
        #expect(root.string("Key") == "a & <b> \"c\" 'd' AB😀 <raw> & end")
    }

    @Test func refusesWhatIsNotWellFormedOrCouldExpand() {
        for (doc, expected) in [
            ("<a><b></a></b>", "</a> closes <b>"),
            ("<a>", "ends inside <a>"),
            ("<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>", "DOCTYPE"),
            ("<a>&x;</a>", "only XML's five"),
            ("<a>&#0;</a>", "character reference"),
            ("<a></a><b/>", "after the root"),
            ("text<a/>", "before the root"),
            ("", "no root element"),
            ("<a b=c/>", "unquoted attribute"),
            ("<a>\n\n<![CDATA[x</a>", "unterminated CDATA section at line 3"),
            (String(repeating: "<a>", count: 65) + String(repeating: "</a>", count: 65), "nested deeper than 64"),
        ] {
            var message = ""
            do { _ = try XMLElement.parse(Array(doc.utf8)) } catch { message = "\(error)" }
            #expect(message.contains(expected), "\(doc.prefix(40)): \(message)")
        }
        #expect((try? XMLElement.parse(Array((String(repeating: "<a>", count: 64) + String(repeating: "</a>", count: 64)).utf8))) != nil)
    }
}

struct S3ErrorTests {
    @Test func decodesErrorDocumentsWithoutKeepingSignatureMaterial() {
        let body = """
            <?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message>
            <StringToSign>AWS4-HMAC-SHA256 secret-ish</StringToSign><SignatureProvided>deadbeef</SignatureProvided><RequestId>tx1</RequestId></Error>
            """
        let e = S3Error.decode(status: 403, body: Array(body.utf8), headers: [:], operation: "GET s3://b/k")
        #expect(e.code == "SignatureDoesNotMatch" && e.requestID == "tx1")
        #expect(e.hint != nil)
        #expect(!e.description.contains("deadbeef") && !e.description.contains("StringToSign"))
        #expect(!e.retryable)
    }

    @Test func bodilessResponsesGetCodesFromStatus() {
        #expect(S3Error.decode(status: 404, body: [], headers: [:], operation: "HEAD").isNotFound)
        #expect(S3Error.decode(status: 503, body: [], headers: [:], operation: "GET").retryable)
        #expect(!S3Error.decode(status: 400, body: [], headers: [:], operation: "GET").retryable)
        #expect(S3Error(status: 403, code: "RequestTimeTooSkewed", message: "", operation: "GET").hint?.contains("clock") == true)
        #expect(S3Error(status: 403, code: "InvalidAccessKeyId", message: "", operation: "GET").hint != nil)
    }

    @Test func retryPolicyBounds() {
        let p = RetryPolicy(maxAttempts: 5, baseDelay: 0.1, maxDelay: 1)
        for attempt in 1...10 {
            let d = p.delay(after: attempt)
            #expect(d >= 0 && d <= min(1, 0.1 * pow(2, Double(attempt - 1))))
        }
        #expect(RetryPolicy.isRetryable(TransportError(code: 7, message: "", retryable: true)))
        #expect(!RetryPolicy.isRetryable(IntegrityError(operation: "", detail: "")))
    }
}

struct CredentialTests {
    func tempDir() -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-cred-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func precedence() throws {
        let home = tempDir()
        defer { try? FileManager.default.removeItem(atPath: home) }
        try FileManager.default.createDirectory(atPath: "\(home)/.aws", withIntermediateDirectories: true)
        try "[default]\naws_access_key_id = DEF\naws_secret_access_key = defsecret\n\n[rgw]\naws_access_key_id=RGW\naws_secret_access_key = rgwsecret\n"
            .write(toFile: "\(home)/.aws/credentials", atomically: true, encoding: .utf8)
        try "[profile rgw]\nregion = eu-central-1\nendpoint_url = http://rgw.local:8080\n"
            .write(toFile: "\(home)/.aws/config", atomically: true, encoding: .utf8)
        let env = ["AWS_ACCESS_KEY_ID": "ENV", "AWS_SECRET_ACCESS_KEY": "envsecret"]

        #expect(try CredentialResolver(environment: env, home: home).resolve().accessKeyID == "ENV")
        #expect(try CredentialResolver(environment: [:], home: home).resolve().accessKeyID == "DEF")
        // An explicit --profile wins over the environment's keys, as with the AWS CLI.
        let rgw = CredentialResolver(profile: "rgw", environment: env, home: home)
        #expect(try rgw.resolve().accessKeyID == "RGW")
        #expect(rgw.region() == "eu-central-1")
        #expect(rgw.endpoint() == "http://rgw.local:8080")
        #expect(try CredentialResolver(environment: ["AWS_PROFILE": "rgw"], home: home).resolve().accessKeyID == "RGW")

        let secretDir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: secretDir) }
        try "SECRETDIRKEY\n".write(toFile: "\(secretDir)/ACCESS_KEY_ID", atomically: true, encoding: .utf8)
        try "dirsecret\n".write(toFile: "\(secretDir)/SECRET_ACCESS_KEY", atomically: true, encoding: .utf8)
        let fromDir = try CredentialResolver(profile: "rgw", credentialsDir: secretDir, environment: env, home: home).resolve()
        #expect(fromDir.accessKeyID == "SECRETDIRKEY" && fromDir.secretAccessKey == "dirsecret")
    }

    @Test func clearErrorsWithoutSecrets() {
        let home = tempDir()
        defer { try? FileManager.default.removeItem(atPath: home) }
        #expect { try CredentialResolver(environment: [:], home: home).resolve() } throws: { "\($0)".contains("AWS_ACCESS_KEY_ID") }
        #expect { try CredentialResolver(profile: "nope", environment: [:], home: home).resolve() } throws: { "\($0)".contains("'nope'") }
        let empty = tempDir()
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect { try CredentialResolver(credentialsDir: empty, environment: [:], home: home).resolve() } throws: { "\($0)".contains("ACCESS_KEY_ID") }
    }

}

struct AddressingTests {
    @Test func pathStyleAndVirtualHosted() throws {
        let rgw = try S3Endpoint(url: "http://127.0.0.1:7480")
        #expect(rgw.addressing == .path)
        #expect(rgw.hostHeader(bucket: "b") == "127.0.0.1:7480")
        #expect(rgw.encodedPath(bucket: "b", key: "a b//c/") == "/b/a%20b//c/")
        let aws = S3Endpoint.aws(region: "eu-west-1")
        #expect(aws.hostHeader(bucket: "b") == "b.s3.eu-west-1.amazonaws.com")
        #expect(aws.encodedPath(bucket: "b", key: "k") == "/k")
        let https = try S3Endpoint(url: "https://rgw.example:443", addressing: .path)
        #expect(https.hostHeader(bucket: "b") == "rgw.example")
        #expect(throws: ConfigError.self) { try S3Endpoint(url: "rgw.example") }
        #expect(throws: ConfigError.self) { try S3Endpoint(url: "http://rgw/bucket") }
        #expect(throws: ConfigError.self) { try S3Endpoint(url: "http://key:secret@rgw") }
    }

    @Test func s3URLs() throws {
        #expect(try S3URL(parsing: "s3://bucket/a b//c/") == S3URL(bucket: "bucket", key: "a b//c/"))
        #expect(try S3URL(parsing: "s3://bucket") == S3URL(bucket: "bucket", key: ""))
        #expect(throws: ConfigError.self) { try S3URL(parsing: "http://bucket/k") }
        #expect(throws: ConfigError.self) { try S3URL(parsing: "s3://B/k") }
        #expect(throws: ConfigError.self) { try S3URL(parsing: "s3://ab") }
    }

    @Test func multipartETagMatchesS3sDefinition() {
        // MD5 of the concatenated binary part MD5s, suffixed with the part count.
        let parts = [Hash.md5(Array("part one".utf8)).hex, Hash.md5(Array("part two".utf8)).hex]
        let joined = Hash.md5(Array("part one".utf8)) + Hash.md5(Array("part two".utf8))
        #expect(MultipartUpload.multipartETag(partMD5s: parts) == Hash.md5(joined).hex + "-2")
    }
}

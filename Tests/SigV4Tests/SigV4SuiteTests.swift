import Foundation
import Testing
@testable import SigV4
import Hashing
import Support

/// The AWS SigV4 test suite (aws-c-auth's `v4` cases), read from `../shared/reference` when present.
struct SigV4SuiteTests {
    static let suiteDir: URL? = {
        let env = ProcessInfo.processInfo.environment["DRCTL_REFERENCE_DIR"]
        let root = env.map { URL(fileURLWithPath: $0) } ?? URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/reference")
        let dir = root.appendingPathComponent("sigv4/aws-signing-test-suite/v4")
        return FileManager.default.fileExists(atPath: dir.path) ? dir : nil
    }()

    static let cases: [String] = {
        guard let dir = suiteDir else {
            print("SKIP: AWS SigV4 test suite not found (../shared/reference/sigv4); set DRCTL_REFERENCE_DIR")
            return []
        }
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
    }()

    struct Case {
        var context: [String: Any]
        var request: SigV4Request
        var body: [UInt8]
        var files: [String: String]
    }

    static func load(_ name: String) throws -> Case {
        let dir = suiteDir!.appendingPathComponent(name)
        func read(_ f: String) throws -> String { try String(contentsOf: dir.appendingPathComponent(f), encoding: .utf8) }
        let context = try JSONSerialization.jsonObject(with: Data(read("context.json").utf8)) as! [String: Any]
        let raw = try read("request.txt")
        let (head, body): (Substring, Substring) = {
            if let r = raw.range(of: "\n\n") { return (raw[..<r.lowerBound], raw[r.upperBound...]) }
            return (Substring(raw), "")
        }()
        var lines = head.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let requestLine = lines.removeFirst()
        let method = String(requestLine.prefix { $0 != " " })
        let target = String(requestLine.dropFirst(method.count + 1).dropLast(" HTTP/1.1".count))
        var headers: [(name: String, value: String)] = []
        for line in lines where !line.isEmpty {
            if line.first == " " || line.first == "\t" {
                headers[headers.count - 1].value += "\n" + line
            } else if let colon = line.firstIndex(of: ":") {
                headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
            }
        }
        let pathPart = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = URIEncoding.encode(URIEncoding.decode(String(pathPart[0])), keepSlash: true)
        var query: [(name: String, value: String)] = []
        if pathPart.count > 1 {
            for item in pathPart[1].split(separator: "&") {
                let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                query.append((URIEncoding.decode(String(kv[0])), kv.count > 1 ? URIEncoding.decode(String(kv[1])) : ""))
            }
        }
        var files: [String: String] = [:]
        for f in ["header-canonical-request.txt", "header-string-to-sign.txt", "header-signature.txt",
                  "query-canonical-request.txt", "query-string-to-sign.txt", "query-signature.txt"] {
            files[f] = try read(f)
        }
        return Case(context: context, request: SigV4Request(method: method, encodedPath: path, query: query, headers: headers),
                    body: Array(body.utf8), files: files)
    }

    static func signer(_ c: Case) -> SigV4Signer {
        let creds = c.context["credentials"] as! [String: Any]
        var s = SigV4Signer(credentials: Credentials(accessKeyID: creds["access_key_id"] as! String,
                                                     secretAccessKey: creds["secret_access_key"] as! String,
                                                     sessionToken: creds["token"] as? String),
                            region: c.context["region"] as! String, service: c.context["service"] as! String)
        s.normalizePath = c.context["normalize"] as? Bool ?? true
        s.sendContentSHA256Header = c.context["sign_body"] as? Bool ?? false
        s.signSessionToken = !(c.context["omit_session_token"] as? Bool ?? false)
        return s
    }

    static func date(_ c: Case) -> Date {
        ISO8601DateFormatter().date(from: c.context["timestamp"] as! String)!
    }

    @Test("v4 suite: header signing", arguments: cases)
    func headerSigning(name: String) throws {
        let c = try Self.load(name)
        let signed = Self.signer(c).signHeaders(c.request, payloadHash: Hash.sha256(c.body).hex, date: Self.date(c))
        #expect(signed.canonicalRequest == c.files["header-canonical-request.txt"])
        #expect(signed.stringToSign == c.files["header-string-to-sign.txt"])
        #expect(signed.signature == c.files["header-signature.txt"])
    }

    @Test("v4 suite: query signing", arguments: cases)
    func querySigning(name: String) throws {
        let c = try Self.load(name)
        let expires = c.context["expiration_in_seconds"] as? Int ?? 3600
        let signed = Self.signer(c).presign(c.request, expires: expires, payloadHash: Hash.sha256(c.body).hex, date: Self.date(c))
        #expect(signed.canonicalRequest == c.files["query-canonical-request.txt"])
        #expect(signed.stringToSign == c.files["query-string-to-sign.txt"])
        #expect(signed.signature == c.files["query-signature.txt"])
    }

    @Test func suiteIsComplete() {
        if Self.suiteDir != nil { #expect(Self.cases.count == 38) }
    }
}

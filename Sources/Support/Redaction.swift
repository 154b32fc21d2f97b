import Foundation

/// Removes secrets from text that is about to be shown: the known secret strings, and any
/// signature or credential material that looks like SigV4 output.
public struct Redactor: Sendable {
    public var secrets: [String]

    public init(secrets: [String]) { self.secrets = secrets.filter { $0.count >= 4 } }

    public func redact(_ text: String) -> String {
        var out = text
        for s in secrets {
            out = out.replacingOccurrences(of: s, with: "<redacted>")
            let encoded = URIEncoding.encode(s)
            if encoded != s { out = out.replacingOccurrences(of: encoded, with: "<redacted>") }
        }
        for marker in ["Signature=", "X-Amz-Signature=", "X-Amz-Security-Token=", "x-amz-security-token:"] {
            var searchFrom = out.startIndex
            while let r = out.range(of: marker, options: .caseInsensitive, range: searchFrom..<out.endIndex) {
                let end = out[r.upperBound...].firstIndex { $0 == "&" || $0 == "," || $0 == " " || $0 == "\n" || $0 == "\"" } ?? out.endIndex
                out.replaceSubrange(r.upperBound..<end, with: "<redacted>")
                searchFrom = out.index(r.upperBound, offsetBy: "<redacted>".count)
            }
        }
        return out
    }
}

/// Every secret this process has loaded, so that any message can be scrubbed of them.
public final class KnownSecrets: @unchecked Sendable {
    public static let shared = KnownSecrets()
    private let lock = NSLock()
    private var secrets: [String] = []
    public func add(_ more: [String]) { lock.withLock { secrets += more } }
    public var redactor: Redactor { lock.withLock { Redactor(secrets: secrets) } }
}

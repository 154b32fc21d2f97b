import Foundation

/// The body of a server-side apply (`application/apply-patch+yaml`). The API server reads it with
/// sigs.k8s.io/yaml, over a YAML 1.1 parser (go-yaml v2), not a JSON parser: JSON is sent, but
/// only JSON that parser reads as the same document. Foundation's `\/` for every slash is refused
/// ("found unknown escape character"), and so are characters it writes unescaped that YAML 1.1
/// does not allow in a document (DEL, the C1 controls but NEL, U+FEFF, U+FFFE, U+FFFF:
/// "control characters are not allowed"); those go out as `\u` escapes, which it reads.
public enum ApplyPatchBody {
    public static func encode(_ object: [String: Any]) throws -> [UInt8] {
        let json = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        let text = String(decoding: json, as: UTF8.self)
        guard text.unicodeScalars.contains(where: { !printable($0) }) else { return Array(json) }
        // Outside strings JSON has ASCII structure only, so every such character is inside one.
        var out = String.UnicodeScalarView()
        for u in text.unicodeScalars {
            if printable(u) { out.append(u); continue }
            out.append(contentsOf: String(format: "\\u%04x", u.value).unicodeScalars)
        }
        return Array(String(out).utf8)
    }

    /// go-yaml's is_printable: tab, line feed, carriage return, 0x20-0x7E, NEL, 0xA0-0xD7FF,
    /// 0xE000-0xFFFD but the byte order mark, and everything beyond the BMP.
    static func printable(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x09, 0x0A, 0x0D, 0x20...0x7E, 0x85, 0xA0...0xD7FF, 0x10000...0x10FFFF: return true
        case 0xE000...0xFFFD: return u.value != 0xFEFF
        default: return false
        }
    }
}

import Foundation
import Support

/// A small element tree of an S3 XML response. S3's documents are shallow and small
/// (a listing page is at most 1,000 entries), so a tree is simpler than streaming.
public final class XMLElement {
    public let name: String
    public internal(set) var text = ""
    public internal(set) var children: [XMLElement] = []

    init(name: String) { self.name = name }

    public func child(_ name: String) -> XMLElement? { children.first { $0.name == name } }
    public func all(_ name: String) -> [XMLElement] { children.filter { $0.name == name } }
    public func string(_ name: String) -> String? { child(name)?.text }

    /// Parses `data`; the error names what was wrong and where.
    public static func parse(_ data: [UInt8]) throws -> XMLElement {
        var reader = XMLReader(data)
        return try reader.document()
    }
}

/// The XML S3 speaks: a declaration, comments, elements (namespace prefixes dropped, attributes
/// skipped), text with the five entities and character references, CDATA. A DOCTYPE is refused,
/// so no entity is ever expanded. Written here rather than using Foundation's XMLParser, which
/// leaks an error object for every malformed document it reads (found by `drctl-fuzz s3-xml`).
struct XMLReader {
    static let maxDepth = 64
    let b: [UInt8]
    var i = 0
    var line = 1

    init(_ data: [UInt8]) { b = data }

    func fail(_ what: String) -> S3ResponseError { .malformed("XML: \(what) at line \(line)") }

    func at(_ s: StaticString) -> Bool {
        let n = s.utf8CodeUnitCount
        guard i + n <= b.count else { return false }
        return s.withUTF8Buffer { p in (0..<n).allSatisfy { b[i + $0] == p[$0] } }
    }

    mutating func advance(_ n: Int = 1) {
        for _ in 0..<n where i < b.count { if b[i] == UInt8(ascii: "\n") { line += 1 }; i += 1 }
    }

    /// Moves past `end`, failing with `what` when the document stops first.
    mutating func skip(past end: StaticString, _ what: String) throws {
        while i < b.count, !at(end) { advance() }
        guard i < b.count else { throw fail("unterminated \(what)") }
        advance(end.utf8CodeUnitCount)
    }

    mutating func skipSpace() { while i < b.count, [0x20, 0x09, 0x0A, 0x0D].contains(b[i]) { advance() } }

    /// Comments, processing instructions and white space between markup outside the root.
    mutating func skipMisc() throws {
        while true {
            skipSpace()
            if at("<?") { try skip(past: "?>", "processing instruction") }
            else if at("<!--") { try skip(past: "-->", "comment") }
            else if at("<!") { throw fail("a DOCTYPE or declaration, which S3 never sends") }
            else { return }
        }
    }

    mutating func document() throws -> XMLElement {
        if b.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }   // a UTF-8 byte order mark
        try skipMisc()
        guard i < b.count else { throw fail("no root element") }
        guard b[i] == UInt8(ascii: "<") else { throw fail("text before the root element") }
        let root = try element()
        try skipMisc()
        guard i == b.count else { throw fail("content after the root element") }
        return root
    }

    /// A name up to white space, `/`, `>` or `=`, without its namespace prefix.
    mutating func name() throws -> (qualified: ArraySlice<UInt8>, local: String) {
        let start = i
        while i < b.count, ![0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: "/"), UInt8(ascii: ">"), UInt8(ascii: "="), UInt8(ascii: "<")].contains(b[i]) { advance() }
        guard i > start else { throw fail("an element without a name") }
        let q = b[start..<i]
        let local = q.lastIndex(of: UInt8(ascii: ":")).map { q[($0 + 1)...] } ?? q
        guard !local.isEmpty else { throw fail("an element without a name") }
        return (q, String(decoding: local, as: UTF8.self))
    }

    /// One element, its content and its end tag; iterative, so depth costs no stack.
    mutating func element() throws -> XMLElement {
        var stack: [(element: XMLElement, qualified: ArraySlice<UInt8>, text: [UInt8])] = []
        while true {
            if i < b.count, b[i] == UInt8(ascii: "<"), !at("</"), !at("<!"), !at("<?") {
                // A start tag.
                advance()
                let n = try name()
                try attributes()
                let e = XMLElement(name: n.local)
                stack.last?.element.children.append(e)
                if at("/>") {
                    advance(2)
                    if stack.isEmpty { return e }
                } else {
                    guard at(">") else { throw fail("an unterminated start tag <\(n.local)>") }
                    advance()
                    guard stack.count < Self.maxDepth else { throw fail("elements nested deeper than \(Self.maxDepth)") }
                    stack.append((e, n.qualified, []))
                }
                continue
            }
            guard !stack.isEmpty else { throw fail("expected an element") }
            if at("</") {
                advance(2)
                let n = try name()
                skipSpace()
                guard at(">") else { throw fail("an unterminated end tag </\(n.local)>") }
                advance()
                let open = stack.removeLast()
                guard open.qualified.elementsEqual(n.qualified) else {
                    throw fail("</\(String(decoding: n.qualified, as: UTF8.self))> closes <\(String(decoding: open.qualified, as: UTF8.self))>")
                }
                open.element.text = String(decoding: open.text, as: UTF8.self)
                if stack.isEmpty { return open.element }
            } else if at("<![CDATA[") {
                advance(9)
                let start = i
                try skip(past: "]]>", "CDATA section")
                stack[stack.count - 1].text += b[start..<(i - 3)]
            } else if at("<!--") {
                try skip(past: "-->", "comment")
            } else if at("<?") {
                try skip(past: "?>", "processing instruction")
            } else if at("<!") {
                throw fail("a declaration inside an element")
            } else if i < b.count, b[i] == UInt8(ascii: "&") {
                stack[stack.count - 1].text += try reference()
            } else if i < b.count {
                let start = i
                while i < b.count, b[i] != UInt8(ascii: "<"), b[i] != UInt8(ascii: "&") { advance() }
                stack[stack.count - 1].text += b[start..<i]
            } else {
                throw fail("the document ends inside <\(stack.last!.element.name)>")
            }
        }
    }

    /// Attributes are read past (S3 puts nothing drctl needs in them); quoted values may hold `>`.
    mutating func attributes() throws {
        while true {
            skipSpace()
            guard i < b.count else { throw fail("an unterminated start tag") }
            if b[i] == UInt8(ascii: ">") || at("/>") { return }
            _ = try name()
            skipSpace()
            guard at("=") else { throw fail("an attribute without a value") }
            advance()
            skipSpace()
            guard i < b.count, b[i] == UInt8(ascii: "\"") || b[i] == UInt8(ascii: "'") else { throw fail("an unquoted attribute value") }
            let quote = b[i]
            advance()
            while i < b.count, b[i] != quote { advance() }
            guard i < b.count else { throw fail("an unterminated attribute value") }
            advance()
        }
    }

    /// `&amp;` and the other four, `&#N;`, `&#xH;`.
    mutating func reference() throws -> [UInt8] {
        let start = i
        while i < b.count, b[i] != UInt8(ascii: ";"), i - start < 12 { advance() }
        guard i < b.count, b[i] == UInt8(ascii: ";") else { throw fail("an unterminated entity reference") }
        let body = String(decoding: b[(start + 1)..<i], as: UTF8.self)
        advance()
        switch body {
        case "amp": return [UInt8(ascii: "&")]
        case "lt": return [UInt8(ascii: "<")]
        case "gt": return [UInt8(ascii: ">")]
        case "quot": return [UInt8(ascii: "\"")]
        case "apos": return [UInt8(ascii: "'")]
        default:
            let value: UInt32?
            if body.hasPrefix("#x") { value = UInt32(body.dropFirst(2), radix: 16) }
            else if body.hasPrefix("#") { value = UInt32(body.dropFirst(), radix: 10) }
            else { throw fail("the entity &\(body); (only XML's five are defined)") }
            guard let v = value, v != 0, let scalar = Unicode.Scalar(v) else { throw fail("the character reference &\(body);") }
            return Array(String(Character(scalar)).utf8)
        }
    }
}

public enum S3ResponseError: Error, CustomStringConvertible {
    case malformed(String)
    public var description: String {
        switch self { case .malformed(let what): return "malformed response from the object store: \(what)" }
    }
}

/// Escapes text for an XML element body or attribute (and HTML's).
public func xmlEscape(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.count)
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default: out.append(c)
        }
    }
    return out
}

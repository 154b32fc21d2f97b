import Foundation
import Support

/// A value of `backup.info`: barman writes Python literals.
public enum PyValue: Sendable, Equatable {
    case none
    case string(String)
    case int(Int64)
    case float(Double)
    case bool(Bool)
    /// A dict, list or tuple repr, or bare text, kept as written.
    case raw(String)

    public var string: String? {
        switch self {
        case .string(let s), .raw(let s): return s
        case .int(let i): return String(i)
        case .float(let f): return String(f)
        case .bool(let b): return b ? "True" : "False"
        case .none: return nil
        }
    }
}

public struct BackupInfoError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// barman-cloud's `backup.info`: `key=value` lines whose values are Python literals.
/// Unknown keys are kept and ignored, so newer barman versions still parse.
public struct BackupInfo: Sendable {
    public enum Status: String, Sendable { case started = "STARTED", done = "DONE", failed = "FAILED" }

    public var values: [String: PyValue]

    public init(parsing text: String) throws {
        var values: [String: PyValue] = [:]
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            guard let eq = line.firstIndex(of: "=") else {
                throw BackupInfoError(description: "backup.info line \(n + 1): no '=' in '\(line.prefix(60))'")
            }
            let key = String(line[..<eq])
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw BackupInfoError(description: "backup.info line \(n + 1): bad key '\(key.prefix(60))'")
            }
            do {
                values[key] = try Self.literal(line[line.index(after: eq)...])
            } catch let e as BackupInfoError {
                throw BackupInfoError(description: "backup.info line \(n + 1) (\(key)): \(e.description)")
            }
        }
        guard values["status"] != nil else { throw BackupInfoError(description: "backup.info has no status") }
        self.values = values
    }

    /// Parses one Python literal as barman writes it with `repr`/`str`.
    static func literal(_ s: Substring) throws -> PyValue {
        if s == "None" { return .none }
        if s == "True" { return .bool(true) }
        if s == "False" { return .bool(false) }
        if let q = s.first, q == "'" || q == "\"" { return .string(try pyString(s)) }
        // Python's int and float reprs never have leading zeros: "000000010000000000000004"
        // (a WAL segment name) is text.
        let digits = s.hasPrefix("-") ? s.dropFirst() : s
        let leadingZero = digits.count > 1 && digits.hasPrefix("0") && !digits.hasPrefix("0.")
        if !leadingZero, let i = Int64(s) { return .int(i) }
        if !leadingZero, s.first?.isNumber == true || s.first == "-", !s.contains(" "), let d = Double(s) { return .float(d) }
        return .raw(String(s))
    }

    /// A quoted Python string with its escapes.
    static func pyString(_ s: Substring) throws -> String {
        let q = s.first!
        var chars = s.dropFirst().unicodeScalars[...]
        var out = String.UnicodeScalarView()
        func hex(_ n: Int) throws -> Unicode.Scalar {
            let digits = String(String.UnicodeScalarView(chars.prefix(n)))
            guard digits.count == n, let v = UInt32(digits, radix: 16), let u = Unicode.Scalar(v) else {
                throw BackupInfoError(description: "bad \\x/\\u escape in string")
            }
            chars = chars.dropFirst(n)
            return u
        }
        while let c = chars.first {
            chars = chars.dropFirst()
            if c == q.unicodeScalars.first! {
                guard chars.isEmpty else { throw BackupInfoError(description: "text after the closing quote") }
                return String(out)
            }
            guard c == "\\" else { out.append(c); continue }
            guard let e = chars.first else { break }
            chars = chars.dropFirst()
            switch e {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "0": out.append("\0")
            case "\\", "'", "\"": out.append(e)
            case "x": out.append(try hex(2))
            case "u": out.append(try hex(4))
            case "U": out.append(try hex(8))
            default: out.append("\\"); out.append(e)
            }
        }
        throw BackupInfoError(description: "unterminated string")
    }

    public subscript(key: String) -> PyValue? { values[key] }
    func str(_ k: String) -> String? { values[k]?.string }

    public var statusText: String { str("status") ?? "" }
    public var status: Status? { Status(rawValue: statusText) }
    public var backupName: String? { str("backup_name") }
    public var error: String? { str("error") }
    public var beginTime: Date? { str("begin_time").flatMap(Self.parseTime) }
    public var endTime: Date? { str("end_time").flatMap(Self.parseTime) }
    public var beginWAL: WALSegment? { str("begin_wal").flatMap { WALSegment(name: $0) } }
    public var endWAL: WALSegment? { str("end_wal").flatMap { WALSegment(name: $0) } }
    public var beginLSN: LSN? { str("begin_xlog").flatMap { LSN(parsing: $0) } }
    public var endLSN: LSN? { str("end_xlog").flatMap { LSN(parsing: $0) } }
    public var timeline: UInt32? { str("timeline").flatMap { UInt32($0) } }
    public var systemID: String? { str("systemid") }
    /// PostgreSQL's `server_version_num`, e.g. 150018; the major version is `version / 10000`.
    public var version: Int? { str("version").flatMap { Int($0) } }
    public var segmentSize: UInt64 { str("xlog_segment_size").flatMap { UInt64($0) } ?? 16 << 20 }
    public var clusterSize: Int64? { str("cluster_size").flatMap { Int64($0) } }
    public var backupLabel: String? { str("backup_label") }

    /// `2026-11-27 04:19:50.334721+00:00` (Python's str() of an aware datetime; the
    /// fraction is left out when it is zero).
    public static func parseTime(_ s: String) -> Date? { RFC3339.parse(s) }
}

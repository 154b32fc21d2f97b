import Foundation

/// A check's expectation on a query's first value: `>= 1`, `= 42`, `!= 0`, `nonempty`, `empty`
/// (the forms `drctl lint` accepts).
public struct Expectation: Sendable, Equatable, CustomStringConvertible {
    public enum Op: String, Sendable { case eq = "=", ne = "!=", ge = ">=", le = "<=", gt = ">", lt = "<", nonempty, empty }
    public var op: Op
    public var value: Double?
    public let description: String

    /// Exactly `(=|==|!=|>=|<=|>|<) <decimal>`, with optional white space after the operator,
    /// or `nonempty` / `empty`; nil for anything else.
    public init?(_ text: String) {
        let s = text
        description = s
        if s == "nonempty" || s == "empty" { op = Op(rawValue: s)!; value = nil; return }
        for (prefix, op) in [(">=", Op.ge), ("<=", .le), ("!=", .ne), ("==", .eq), ("=", .eq), (">", .gt), ("<", .lt)] where s.hasPrefix(prefix) {
            // A plain decimal: `-?digits[.digits]` (no exponent, no inf or nan).
            let number = s.dropFirst(prefix.count).drop { $0.isWhitespace }
            guard number.range(of: #"^-?[0-9]+(\.[0-9]+)?$"#, options: .regularExpression) != nil, let v = Double(number) else { return nil }
            self.op = op
            value = v
            return
        }
        return nil
    }

    /// Whether `output` (psql's unaligned, tuples-only text) meets the expectation; the reason if not.
    public func evaluate(_ output: String) -> (ok: Bool, detail: String) {
        let first = output.split(separator: "\n", omittingEmptySubsequences: false).first.map { String($0.split(separator: "|", omittingEmptySubsequences: false).first ?? "") } ?? ""
        switch op {
        case .nonempty: return (!output.isEmpty, output.isEmpty ? "no rows, expected some" : "\(output.split(separator: "\n").count) row(s)")
        case .empty: return (output.isEmpty, output.isEmpty ? "no rows" : "\(output.split(separator: "\n").count) row(s), expected none")
        default:
            guard let v = Double(first.trimmingCharacters(in: .whitespaces)), let want = value else {
                return (false, "got '\(first)', expected a number \(description)")
            }
            let ok: Bool
            switch op {
            case .eq: ok = v == want
            case .ne: ok = v != want
            case .ge: ok = v >= want
            case .le: ok = v <= want
            case .gt: ok = v > want
            case .lt: ok = v < want
            default: ok = false
            }
            return (ok, "got \(first), expected \(description)")
        }
    }
}

/// A policy duration: `30s`, `30m`, `24h`, `7d`, `4w`, `12mo`, `1y`. A month is 730 hours
/// (a twelfth of 365 days), so `12mo` is exactly a year.
public struct Duration: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let seconds: Int
    /// As written, for messages and for CNPG's `<n>[dwm]` retention form.
    public let amount: Int
    public let unit: String

    /// 100 years.
    public static let maximum = 100 * 8760 * 3600
    static let units: [(String, Int)] = [("mo", 730 * 3600), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400), ("w", 7 * 86400), ("y", 8760 * 3600)]

    public init?(parsing text: String) {
        for (suffix, mult) in Self.units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy(\.isASCII), let n = Int(number), n > 0 else { return nil }
            // At most a century: longer is a typo, and would overflow arithmetic on it (found by drctl-fuzz policy).
            let (total, overflow) = n.multipliedReportingOverflow(by: mult)
            guard !overflow, total <= Self.maximum else { return nil }
            amount = n
            unit = suffix
            seconds = total
            return
        }
        return nil
    }

    public init(seconds: Int) {
        self.seconds = seconds
        amount = seconds
        unit = "s"
    }

    public var description: String { unit == "s" ? Self.humanize(seconds) : "\(amount)\(unit)" }

    public static func < (a: Duration, b: Duration) -> Bool { a.seconds < b.seconds }
    public static func == (a: Duration, b: Duration) -> Bool { a.seconds == b.seconds }
    public func hash(into h: inout Hasher) { h.combine(seconds) }

    /// `90061` -> `1d1h1m1s`, for messages.
    public static func humanize(_ s: Int) -> String {
        if s == 0 { return "0s" }
        var out = "", rest = s
        for (u, m) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] where rest >= m {
            out += "\(rest / m)\(u)"
            rest %= m
        }
        return out
    }

    /// Velero's `ttl`: a Go duration in hours, e.g. `168h0m0s`.
    public var goDuration: String {
        "\(seconds / 3600)h\((seconds % 3600) / 60)m\(seconds % 60)s"
    }
}

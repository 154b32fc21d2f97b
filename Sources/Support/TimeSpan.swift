/// A length of time as people write it, in one of the dialects drctl reads. They disagree on
/// `m`, which is why the dialect is always named:
/// - `policy`: `30s 30m 24h 7d 4w 12mo 1y`; `m` is minutes, `mo` a month of 730 hours (a twelfth
///   of 365 days, so `12mo` is a year).
/// - `cnpg`: CloudNativePG's and barman's retention, `7d 4w 3m`; `m` is a month of 31 days, as
///   barman counts it.
/// - `commandLine`: `3600`, `90s`, `15m`, `12h`, `7d`; `m` is minutes, a bare number seconds.
/// Named so it does not shadow `Swift.Duration`.
public struct TimeSpan: Sendable, Hashable, Comparable, CustomStringConvertible {
    public enum Dialect: Sendable { case policy, cnpg, commandLine }

    public let seconds: Int
    /// As written, for messages and for re-writing in another tool's form.
    public let amount: Int
    public let unit: String

    /// 100 years: longer is a typo, and would overflow arithmetic on it (found by drctl-fuzz policy).
    public static let maximum = 100 * 8760 * 3600

    static func units(_ d: Dialect) -> [(String, Int)] {
        switch d {
        case .policy: return [("mo", 730 * 3600), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400), ("w", 7 * 86400), ("y", 8760 * 3600)]
        case .cnpg: return [("d", 86400), ("w", 7 * 86400), ("m", 31 * 86400)]
        case .commandLine: return [("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        }
    }

    /// Seconds in one `unit` of `dialect` (`m` in cnpg: 31 days), nil for a unit it does not have.
    public static func unitSeconds(_ unit: String, dialect: Dialect) -> Int? { units(dialect).first { $0.0 == unit }?.1 }

    public init?(dialect: Dialect, _ text: String) {
        if dialect == .commandLine, !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(text), n <= Self.maximum {
            (seconds, amount, unit) = (n, n, "s")
            return
        }
        for (suffix, mult) in Self.units(dialect) where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(number), n > 0 else { return nil }
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

    /// This span as CNPG's retentionPolicy (`^[1-9][0-9]*[dwm]$`, m = months): months stay months,
    /// a year is 12 of them, anything shorter than a day rounds up to days.
    public var cnpgRetention: String {
        switch unit {
        case "d", "w": return "\(amount)\(unit)"
        case "mo": return "\(amount)m"
        case "y": return "\(amount * 12)m"
        default: return "\(max(1, (seconds + 86399) / 86400))d"
        }
    }

    public static func < (a: TimeSpan, b: TimeSpan) -> Bool { a.seconds < b.seconds }
    public static func == (a: TimeSpan, b: TimeSpan) -> Bool { a.seconds == b.seconds }
    public func hash(into h: inout Hasher) { h.combine(seconds) }

    /// `90061` -> `1d1h1m1s`: exact, for messages.
    public static func humanize(_ s: Int) -> String {
        if s == 0 { return "0s" }
        var out = "", rest = s
        for (u, m) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] where rest >= m {
            out += "\(rest / m)\(u)"
            rest %= m
        }
        return out
    }

    /// `90061` -> `1d1h`: the two largest units, for verdicts where seconds are noise.
    public static func humanizeRoughly(_ s: Int) -> String {
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m" }
        if s < 86400 { return "\(s / 3600)h\(s % 3600 / 60 > 0 ? "\(s % 3600 / 60)m" : "")" }
        return "\(s / 86400)d\(s % 86400 / 3600 > 0 ? "\(s % 86400 / 3600)h" : "")"
    }

    /// Velero's `ttl`: a Go duration in hours, e.g. `168h0m0s`.
    public var goDuration: String {
        "\(seconds / 3600)h\((seconds % 3600) / 60)m\(seconds % 60)s"
    }
}

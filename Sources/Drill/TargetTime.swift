import Foundation
import Support
import Catalog
import Layout
import Policy

/// Where a point-in-time recovery stops.
public enum RecoveryTarget: Sendable, Equatable, CustomStringConvertible {
    /// Replay every archived segment.
    case latest
    /// Stop before the first transaction that committed after this instant.
    case time(Date)
    /// This base backup, to the point where it is consistent and no further
    /// (`recovery_target = 'immediate'`): a restore point, such as a long-term tier backup,
    /// which keeps no WAL beyond its own.
    case backup(String)

    public var date: Date? { if case .time(let d) = self { return d } else { return nil } }
    public var description: String {
        switch self {
        case .latest: return "latest"
        case .time(let d): return TargetTime.postgres(d)
        case .backup(let id): return "backup \(id) (consistent point)"
        }
    }
}

public struct TargetTimeError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// `--at` values: RFC 3339 with any offset, `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC), `latest`,
/// and relative forms like `-2h` or `-90m` (before now).
public enum TargetTime {
    public static func parse(_ text: String, now: Date) throws -> RecoveryTarget {
        let s = text.trimmingCharacters(in: .whitespaces)
        if s == "latest" { return .latest }
        // A barman backup id (YYYYMMDDTHHMMSS): that backup's consistent point.
        if s.utf8.count == 15, s.enumerated().allSatisfy({ $0.offset == 8 ? $0.element == "T" : $0.element.isASCII && $0.element.isNumber }) {
            return .backup(s)
        }
        if s.hasPrefix("-") {
            guard let d = TimeSpan(dialect: .policy, String(s.dropFirst())) else {
                throw TargetTimeError(description: "'\(text)': a relative time is a minus sign and a duration, e.g. -30m, -2h, -1d")
            }
            return .time(now.addingTimeInterval(-Double(d.seconds)))
        }
        guard let d = RFC3339.parse(s) else {
            throw TargetTimeError(description: "'\(text)' is not a time: use RFC 3339 (2026-11-27T04:20:00Z, 2026-11-27T05:20:00+01:00), '2026-11-27 04:20:00' (UTC), 'latest', a relative time such as -2h, or a backup id (20261127T040000) for that backup's consistent point")
        }
        return .time(d)
    }

    /// PostgreSQL's form for `recovery_target_time`: `YYYY-MM-DD HH:MM:SS.ffffff+00`. An ISO
    /// `Z` suffix is what CNPG users trip over (cloudnative-pg#10819); an explicit `+00` is
    /// read the same by every PostgreSQL version.
    public static func postgres(_ d: Date) -> String {
        // The same instant and rounding as the RFC 3339 form, with PostgreSQL's separators.
        var text = RFC3339.format(d)   // YYYY-MM-DDTHH:MM:SS.ffffffZ
        text.removeLast()
        return text.replacingOccurrences(of: "T", with: " ") + "+00"
    }

    /// RFC 3339 with microseconds, for messages and evidence.
    public static func rfc3339(_ d: Date) -> String { RFC3339.format(d) }
}

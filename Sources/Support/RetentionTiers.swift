import Foundation

/// Long-term base backups kept beyond a recovery window (grandfather-father-son), by restic's
/// rules for `--keep-daily/--keep-weekly/--keep-monthly`: for the last `n` days (ISO weeks,
/// calendar months, in UTC) that have a backup, the newest backup of each.
public struct RetentionTiers: Sendable, Equatable, Codable, CustomStringConvertible {
    public var daily: Int
    public var weekly: Int
    public var monthly: Int

    public init(daily: Int = 0, weekly: Int = 0, monthly: Int = 0) {
        self.daily = daily
        self.weekly = weekly
        self.monthly = monthly
    }

    public static let none = RetentionTiers()
    public var isEmpty: Bool { daily == 0 && weekly == 0 && monthly == 0 }

    /// `daily 7, weekly 4, monthly 12` (the tiers that keep anything).
    public var description: String {
        [("daily", daily), ("weekly", weekly), ("monthly", monthly)].filter { $0.1 > 0 }.map { "\($0.0) \($0.1)" }.joined(separator: ", ")
    }

    public enum Tier: String, Sendable, CaseIterable { case daily, weekly, monthly }

    public func count(_ t: Tier) -> Int {
        switch t {
        case .daily: return daily
        case .weekly: return weekly
        case .monthly: return monthly
        }
    }

    static let utc: Calendar = {
        var c = Calendar(identifier: .iso8601)
        c.timeZone = TimeZone(identifier: "UTC")!
        return c
    }()

    /// The day, ISO week or month `date` falls in, as a comparable label.
    public static func period(_ t: Tier, of date: Date) -> String {
        let c = utc.dateComponents([.year, .month, .day, .yearForWeekOfYear, .weekOfYear], from: date)
        switch t {
        case .daily: return String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
        case .weekly: return String(format: "%04d-W%02d", c.yearForWeekOfYear!, c.weekOfYear!)
        case .monthly: return String(format: "%04d-%02d", c.year!, c.month!)
        }
    }

    /// The labels of the `count` calendar periods up to and including the one `now` falls in:
    /// what a tier covers when counted by the calendar (so entries in new periods cannot push
    /// older ones out).
    public static func recentPeriods(_ t: Tier, count: Int, now: Date) -> Set<String> {
        var out = Set<String>(), d = now
        while out.count < count {
            out.insert(period(t, of: d))
            switch t {
            case .daily: d = d.addingTimeInterval(-86400)
            case .weekly: d = d.addingTimeInterval(-7 * 86400)
            case .monthly: d = utc.date(byAdding: .month, value: -1, to: d)!
            }
        }
        return out
    }

    /// Which of `items` (id, time) each tier keeps: walking newest first, the first of each
    /// period, until the tier has its count.
    public func select(_ items: [(id: String, at: Date)]) -> [String: [Tier]] {
        var kept: [String: [Tier]] = [:]
        let newestFirst = items.sorted { ($0.at, $0.id) > ($1.at, $1.id) }
        for t in Tier.allCases where count(t) > 0 {
            var seen = Set<String>()
            for item in newestFirst {
                guard seen.count < count(t) else { break }
                if seen.insert(Self.period(t, of: item.at)).inserted { kept[item.id, default: []].append(t) }
            }
        }
        return kept
    }
}

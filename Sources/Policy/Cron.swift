import Foundation

/// A cron expression as the tools drctl renders for read them (robfig/cron): Velero and
/// Kubernetes take five fields (minute hour day-of-month month day-of-week), CNPG six (seconds
/// first, day-of-week optional). Both accept `CRON_TZ=Zone` and `@daily`-style descriptors.
public struct Cron: Sendable, Equatable {
    /// `drctl`: drctl's own schedules (drills, run by `drctl serve`): five fields, or six with seconds first.
    public enum Dialect: Sendable { case standard, cnpg, drctl }

    public let expression: String
    public let timeZone: String?
    let seconds: [Int]
    let minutes: [Int]
    let hours: [Int]
    let days: Set<Int>
    let months: Set<Int>
    let weekdays: Set<Int>
    let daysRestricted: Bool
    let weekdaysRestricted: Bool
    let every: Int?

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    public init(_ text: String, dialect: Dialect) throws {
        expression = text
        var spec = text.trimmingCharacters(in: .whitespaces)
        var tz: String?
        for prefix in ["CRON_TZ=", "TZ="] where spec.hasPrefix(prefix) {
            let parts = spec.dropFirst(prefix.count).split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { throw ParseError(description: "nothing after \(prefix)\(parts.first ?? "")") }
            tz = String(parts[0])
            guard TimeZone(identifier: tz!) != nil else { throw ParseError(description: "unknown time zone '\(tz!)'") }
            spec = String(parts[1]).trimmingCharacters(in: .whitespaces)
        }
        timeZone = tz
        if spec.hasPrefix("@") {
            let d: [String: String] = ["@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                                       "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"]
            if spec.hasPrefix("@every ") {
                guard let dur = Self.goDuration(String(spec.dropFirst(7))), dur > 0 else {
                    throw ParseError(description: "'\(spec)': @every needs a duration like 1h30m")
                }
                (seconds, minutes, hours, days, months, weekdays) = ([], [], [], [], [], [])
                (daysRestricted, weekdaysRestricted, every) = (false, false, dur)
                return
            }
            guard let std = d[spec] else { throw ParseError(description: "unknown descriptor '\(spec)'") }
            spec = (dialect == .cnpg ? "0 " : "") + std
        }
        var fields = spec.split(separator: " ").map(String.init)
        switch dialect {
        case .standard:
            guard fields.count == 5 else {
                throw ParseError(description: fields.count == 6
                    ? "six fields, but this schedule takes five (minute hour day-of-month month day-of-week); a seconds field is CNPG's form"
                    : "\(fields.count) fields; expected five (minute hour day-of-month month day-of-week)")
            }
            fields.insert("0", at: 0)
        case .drctl:
            guard fields.count == 5 || fields.count == 6 else {
                throw ParseError(description: "\(fields.count) fields; expected five (minute hour day-of-month month day-of-week) or six (seconds first)")
            }
            if fields.count == 5 { fields.insert("0", at: 0) }
        case .cnpg:
            guard fields.count == 6 || fields.count == 5 else {
                throw ParseError(description: "\(fields.count) fields; CNPG expects six (second minute hour day-of-month month day-of-week)")
            }
            if fields.count == 5 { fields.append("*") }   // CNPG's day-of-week is optional
        }
        seconds = try Self.field(fields[0], 0...59, "second").sorted()
        minutes = try Self.field(fields[1], 0...59, "minute").sorted()
        hours = try Self.field(fields[2], 0...23, "hour").sorted()
        days = try Self.field(fields[3], 1...31, "day-of-month")
        months = try Self.field(fields[4], 1...12, "month", names: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], base: 1)
        var wd = try Self.field(fields[5], 0...7, "day-of-week", names: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], base: 0)
        if wd.remove(7) != nil { wd.insert(0) }
        weekdays = wd
        daysRestricted = !(fields[3] == "*" || fields[3] == "?")
        weekdaysRestricted = !(fields[5] == "*" || fields[5] == "?")
        every = nil
    }

    static func field(_ f: String, _ range: ClosedRange<Int>, _ name: String, names: [String] = [], base: Int = 0) throws -> Set<Int> {
        func value(_ s: Substring) throws -> Int {
            if let i = Int(s), range.contains(i) { return i }
            if let idx = names.firstIndex(of: s.uppercased()) { return idx + base }
            throw ParseError(description: "\(name) '\(s)' is out of range \(range.lowerBound)-\(range.upperBound)")
        }
        var out = Set<Int>()
        for part in f.split(separator: ",", omittingEmptySubsequences: false) {
            guard !part.isEmpty else { throw ParseError(description: "empty \(name) list entry in '\(f)'") }
            let stepParts = part.split(separator: "/", omittingEmptySubsequences: false)
            guard stepParts.count <= 2 else { throw ParseError(description: "bad \(name) '\(part)'") }
            var step = 1
            if stepParts.count == 2 {
                guard let s = Int(stepParts[1]), s > 0 else { throw ParseError(description: "bad step in \(name) '\(part)'") }
                step = s
            }
            let r = stepParts[0]
            var lo: Int, hi: Int
            if r == "*" || r == "?" {
                (lo, hi) = (range.lowerBound, range.upperBound)
            } else if let dash = r.firstIndex(of: "-") {
                lo = try value(r[..<dash]); hi = try value(r[r.index(after: dash)...])
                guard lo <= hi else { throw ParseError(description: "\(name) range '\(r)' runs backwards") }
            } else {
                lo = try value(r)
                hi = stepParts.count == 2 ? range.upperBound : lo
            }
            out.formUnion(stride(from: lo, through: hi, by: step))
        }
        return out
    }

    /// Go's duration syntax as `@every` takes it: `1h30m`, `90s`.
    static func goDuration(_ s: String) -> Int? {
        var total = 0.0, num = "", i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if c.isNumber || c == "." { num.append(c); i = s.index(after: i); continue }
            guard let n = Double(num) else { return nil }
            let mult: Double
            switch c {
            case "h": mult = 3600
            case "m": mult = 60
            case "s": mult = 1
            default: return nil
            }
            total += n * mult
            num = ""
            i = s.index(after: i)
        }
        return num.isEmpty && total > 0 ? Int(total) : nil
    }

    /// The first run strictly after `date`, in the schedule's `CRON_TZ` (UTC without one), or nil
    /// when it never runs (e.g. 30 February). A time a daylight-saving jump skips runs at the
    /// first instant after the jump; one it repeats runs once. `@every D` runs D after `date`.
    public func next(after date: Date) -> Date? {
        if let every { return date.addingTimeInterval(Double(every)) }
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: timeZone ?? "UTC") ?? TimeZone(identifier: "UTC")!
        let now = cal.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        var day = cal.startOfDay(for: date)
        for n in 0..<(366 * 8) {
            let c = cal.dateComponents([.year, .month, .day, .weekday], from: day)
            let domOK = days.contains(c.day!), dowOK = weekdays.contains(c.weekday! - 1)
            let dayOK = daysRestricted && weekdaysRestricted ? (domOK || dowOK) : (domOK && dowOK)
            if months.contains(c.month!) && dayOK {
                for h in hours where n > 0 || h >= now.hour! {
                    for m in minutes where n > 0 || h > now.hour! || m >= now.minute! {
                        for s in seconds {
                            let dc = DateComponents(year: c.year, month: c.month, day: c.day, hour: h, minute: m, second: s)
                            if let d = cal.date(from: dc), d > date { return d }
                        }
                    }
                }
            }
            guard let next = cal.date(byAdding: .day, value: 1, to: day) else { return nil }
            day = next
        }
        return nil
    }

    /// The longest time between two runs, in seconds, over a span of more than a year (so
    /// monthly and yearly schedules are covered). Wall-clock time: daylight-saving shifts of a
    /// `CRON_TZ` schedule are not counted. Nil if it never runs.
    public var longestGap: Int? {
        if let every { return every }
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC")!
        let start = cal.date(from: DateComponents(year: 2025, month: 1, day: 1))!
        let firstS = seconds.first!, lastS = seconds.last!
        var intra = 0
        for (a, b) in zip(seconds, seconds.dropFirst()) { intra = max(intra, b - a) }
        var lastMinute: Int?
        var gap = 0
        for day in 0..<800 {
            let date = start.addingTimeInterval(Double(day) * 86400)
            let c = cal.dateComponents([.day, .month, .weekday], from: date)
            guard months.contains(c.month!) else { continue }
            let domOK = days.contains(c.day!), dowOK = weekdays.contains(c.weekday! - 1)
            // As in cron: when both day fields are restricted, either one matching is enough.
            let dayOK = daysRestricted && weekdaysRestricted ? (domOK || dowOK) : (domOK && dowOK)
            guard dayOK else { continue }
            for h in hours {
                for m in minutes {
                    let minute = day * 1440 + h * 60 + m
                    if let last = lastMinute { gap = max(gap, (minute - last) * 60 + firstS - lastS) }
                    lastMinute = minute
                }
            }
        }
        if seconds.count > 1 { gap = max(gap, intra) }
        return gap > 0 ? gap : nil
    }
}

/// When a scheduled job counts as missing: its longest interval plus a quarter, at least 15
/// minutes and at most 6 hours, for run time and jitter. One definition for the rendered alerts
/// and for `drctl status`, so both call the same backup overdue.
public func overdueAfter(interval: Int) -> Int { interval + min(6 * 3600, max(900, interval / 4)) }

import Foundation

/// The one codec for times drctl reads and writes as text: RFC 3339 as PostgreSQL, Python, S3,
/// Kubernetes and drctl's own evidence write it. Parsed by hand: Foundation's ISO 8601 and
/// DateFormatter parsers trap or leak on some malformed input (found by drctl-fuzz), and
/// everything read from a bucket is hostile.
public enum RFC3339 {
    /// `YYYY-MM-DD[T ]HH:MM:SS[.frac][Z|±HH[:MM]]`, microseconds kept; no offset means UTC.
    public static func parse(_ s: String) -> Date? {
        let b = Array(s.utf8)
        func num(_ from: Int, _ len: Int) -> Int? {
            guard from + len <= b.count else { return nil }
            var v = 0
            for i in from..<from + len {
                guard (48...57).contains(b[i]) else { return nil }
                v = v * 10 + Int(b[i] - 48)
            }
            return v
        }
        guard b.count >= 19, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"), b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"),
              [UInt8(ascii: "T"), UInt8(ascii: "t"), UInt8(ascii: " ")].contains(b[10]),
              let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2), let h = num(11, 2), let mi = num(14, 2), let sec = num(17, 2),
              (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, sec < 61 else { return nil }
        var i = 19
        var micros = 0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < b.count, (48...57).contains(b[i]) {
                if digits < 6 { micros = micros * 10 + Int(b[i] - 48) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<max(digits, 6) { micros *= 10 }
        }
        var offset = 0
        if i < b.count {
            if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
                guard i + 1 == b.count else { return nil }
            } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
                let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
                guard let oh = num(i + 1, 2), oh < 24 else { return nil }
                var om = 0
                switch b.count - (i + 3) {
                case 0: break
                case 2: guard let m = num(i + 3, 2) else { return nil }; om = m
                case 3: guard b[i + 3] == UInt8(ascii: ":"), let m = num(i + 4, 2) else { return nil }; om = m
                default: return nil
                }
                offset = sign * (oh * 3600 + om * 60)
            } else {
                return nil
            }
        }
        var t = tm()
        t.tm_year = Int32(y - 1900); t.tm_mon = Int32(mo - 1); t.tm_mday = Int32(d)
        t.tm_hour = Int32(h); t.tm_min = Int32(mi); t.tm_sec = Int32(sec)
        let whole = timegm(&t) - offset
        return Date(timeIntervalSince1970: Double(whole) + Double(micros) / 1_000_000)
    }

    /// `2026-11-27T05:31:57.123456Z`: microseconds, the precision PostgreSQL keeps (evidence,
    /// targets, messages).
    public static func format(_ d: Date) -> String {
        let (t, micros) = utc(d)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", Int(t.tm_year) + 1900, Int(t.tm_mon) + 1, Int(t.tm_mday),
                      Int(t.tm_hour), Int(t.tm_min), Int(t.tm_sec), micros)
    }

    /// `2026-11-27T05:31:57Z`: whole seconds (S3 retention dates, reports, `-o json`).
    public static func formatSeconds(_ d: Date) -> String {
        let (t, _) = utc(d)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", Int(t.tm_year) + 1900, Int(t.tm_mon) + 1, Int(t.tm_mday),
                      Int(t.tm_hour), Int(t.tm_min), Int(t.tm_sec))
    }

    /// `20261127T053157Z`: ISO 8601's basic form, for names (scratch directories, drill ids, SigV4's date).
    public static func formatBasic(_ d: Date) -> String {
        let (t, _) = utc(Date(timeIntervalSince1970: d.timeIntervalSince1970.rounded(.down)))
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", Int(t.tm_year) + 1900, Int(t.tm_mon) + 1, Int(t.tm_mday),
                      Int(t.tm_hour), Int(t.tm_min), Int(t.tm_sec))
    }

    /// `2026-11-27 05:31:57`: UTC for tables and pages, which say UTC in their headings.
    public static func formatReadable(_ d: Date) -> String {
        let (t, _) = utc(d)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d", Int(t.tm_year) + 1900, Int(t.tm_mon) + 1, Int(t.tm_mday),
                      Int(t.tm_hour), Int(t.tm_min), Int(t.tm_sec))
    }

    static func utc(_ d: Date) -> (tm, Int) {
        let micros = Int((d.timeIntervalSince1970 * 1_000_000).rounded())
        let whole = Int((Double(micros) / 1_000_000).rounded(.down))
        var t = tm()
        var s = time_t(whole)
        gmtime_r(&s, &t)
        return (t, micros - whole * 1_000_000)
    }
}

/// HTTP dates (Last-Modified).
public enum HTTPDate {
    /// An HTTP date in its one current form, IMF-fixdate: `Fri, 27 Nov 2026 13:47:56 GMT`. Read here
    /// rather than by DateFormatter, which leaks on some malformed text (found by drctl-fuzz s3-xml).
    public static func parse(_ s: String) -> Date? {
        let parts = s.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard parts.count == 6, parts[0].hasSuffix(","), parts[5] == "GMT",
              let day = Int(parts[1]), (1...31).contains(day), let month = months.firstIndex(of: String(parts[2])),
              let year = Int(parts[3]), (1970...9999).contains(year) else { return nil }
        let hms = parts[4].split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
        guard hms.count == 3, let h = hms[0], let m = hms[1], let sec = hms[2], (0..<24).contains(h), (0..<60).contains(m), (0...60).contains(sec)
        else { return nil }
        var t = tm()
        t.tm_year = Int32(year - 1900); t.tm_mon = Int32(month); t.tm_mday = Int32(day)
        t.tm_hour = Int32(h); t.tm_min = Int32(m); t.tm_sec = Int32(sec)
        return Date(timeIntervalSince1970: Double(timegm(&t)))
    }
}

/// The JSON coders for everything drctl writes to and reads back from a bucket (evidence, prune
/// journals) and for `-o json`: sorted keys, times through RFC3339 (never Foundation's
/// `.iso8601`, whose decoder traps on some malformed times).
public enum JSONCoding {
    /// `precise`: microseconds (evidence, journals); otherwise whole seconds, as reports show them.
    public static func encoder(pretty: Bool = true, precise: Bool = true) -> JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .custom { d, enc in
            var c = enc.singleValueContainer()
            try c.encode(precise ? RFC3339.format(d) : RFC3339.formatSeconds(d))
        }
        e.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { dec in
            let c = try dec.singleValueContainer()
            let s = try c.decode(String.self)
            guard let date = RFC3339.parse(s) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "'\(s)' is not an RFC 3339 time")
            }
            return date
        }
        return d
    }
}

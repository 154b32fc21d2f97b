import Foundation

/// Timestamps as PostgreSQL, Python and RFC 3339 write them:
/// `YYYY-MM-DD[T ]HH:MM:SS[.frac][Z|±HH[:MM]]`, microseconds kept; no offset means UTC.
public func parseTimestamp(_ s: String) -> Date? {
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


/// A PostgreSQL log sequence number, written `X/Y` (high and low 32 bits in hex).
public struct LSN: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt64
    public init(_ value: UInt64) { self.value = value }

    public init?(parsing s: String) {
        let parts = s.split(separator: "/")
        guard parts.count == 2, let hi = UInt32(parts[0], radix: 16), let lo = UInt32(parts[1], radix: 16) else { return nil }
        value = UInt64(hi) << 32 | UInt64(lo)
    }

    public var description: String { "\(String(value >> 32, radix: 16, uppercase: true))/\(String(value & 0xFFFF_FFFF, radix: 16, uppercase: true))" }
    public static func < (a: LSN, b: LSN) -> Bool { a.value < b.value }
}

/// A WAL segment name: 24 upper-case hex digits, timeline (8), log (8), segment (8).
/// With the default 16 MiB segments, `segment` runs 00..FF within each log.
public struct WALSegment: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var timeline: UInt32
    public var log: UInt32
    public var segment: UInt32

    public init(timeline: UInt32, log: UInt32, segment: UInt32) {
        self.timeline = timeline
        self.log = log
        self.segment = segment
    }

    public init?(name: some StringProtocol) {
        guard name.utf8.count == 24, name.utf8.allSatisfy({ (48...57).contains($0) || (65...70).contains($0) }) else { return nil }
        let s = String(name)
        let i = s.startIndex
        let a = s.index(i, offsetBy: 8), b = s.index(i, offsetBy: 16)
        guard let t = UInt32(s[i..<a], radix: 16), let l = UInt32(s[a..<b], radix: 16), let g = UInt32(s[b...], radix: 16) else { return nil }
        timeline = t; log = l; segment = g
    }

    public var name: String { hex8(timeline) + hex8(log) + hex8(segment) }
    /// barman's directory for the segment: the first 16 hex digits (timeline + log).
    public var hashDirectory: String { hex8(timeline) + hex8(log) }
    public var description: String { name }

    /// Segments per log for a segment size (256 for 16 MiB).
    public static func segmentsPerLog(_ segmentSize: UInt64) -> UInt64 { 0x1_0000_0000 / segmentSize }

    /// Position of the segment in LSN space, independent of its timeline.
    public func number(segmentSize: UInt64) -> UInt64 { UInt64(log) * Self.segmentsPerLog(segmentSize) + UInt64(segment) }

    public func startLSN(segmentSize: UInt64) -> LSN { LSN(UInt64(log) << 32 + UInt64(segment) * segmentSize) }

    /// The segment holding `lsn` on `timeline`.
    public init(timeline: UInt32, lsn: LSN, segmentSize: UInt64) {
        let n = lsn.value / segmentSize
        let per = Self.segmentsPerLog(segmentSize)
        self.init(timeline: timeline, log: UInt32(n / per), segment: UInt32(n % per))
    }

    /// The next segment on the same timeline.
    public func next(segmentSize: UInt64) -> WALSegment {
        let n = number(segmentSize: segmentSize) + 1
        let per = Self.segmentsPerLog(segmentSize)
        return WALSegment(timeline: timeline, log: UInt32(n / per), segment: UInt32(n % per))
    }

    public static func < (a: WALSegment, b: WALSegment) -> Bool {
        (a.log, a.segment, a.timeline) < (b.log, b.segment, b.timeline)
    }
}

func hex8(_ v: UInt32) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: 8 - s.count) + s
}

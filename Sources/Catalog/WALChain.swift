import Foundation
import Layout

/// What the bucket holds of one server's WAL archive.
public struct WALArchive: Sendable {
    public struct Object: Sendable, Equatable {
        public var key: String
        public var size: Int64
        public var lastModified: Date?
        public init(key: String, size: Int64, lastModified: Date?) {
            self.key = key
            self.size = size
            self.lastModified = lastModified
        }
    }

    public var segments: [WALSegment: Object] = [:]
    public var partials: [WALSegment: Object] = [:]
    public var histories: [UInt32: TimelineHistory] = [:]
    /// The object of each timeline history file (`wals/0000000N.history[.gz]`).
    public var historyObjects: [UInt32: Object] = [:]
    public init() {}
}

/// How far WAL replay can get from a base backup, and where it would stop.
public struct ChainAnalysis: Sendable, Equatable {
    /// Timelines recovery follows, oldest first (the backup's, then its descendants).
    public var timelines: [UInt32]
    /// The last segment of the unbroken run from the backup's begin_wal; nil if begin_wal itself is missing.
    public var end: WALSegment?
    /// When that segment's object was written: the evidence for the newest recoverable point.
    public var endObjectTime: Date?
    /// Missing segments between begin_wal and the newest archived segment on the path, as
    /// ranges (first...last) of the segments that would be read.
    public var gaps: [ClosedRange<WALSegment>]
    /// True when every segment from begin_wal to end_wal is present: the backup alone is consistent.
    public var consistent: Bool
}

/// A stretch of time the archive covers with WAL, or (`missing` set) a gap in it.
public struct WALCoverageSpan: Sendable, Equatable {
    public var from: Date
    public var to: Date
    /// For a gap: the first segment lost.
    public var missing: String?
    public init(from: Date, to: Date, missing: String? = nil) {
        self.from = from
        self.to = to
        self.missing = missing
    }
}

public enum WALChain {
    /// The archive's segments as stretches of time (by the objects' times), with a gap span
    /// wherever a segment is missing on a timeline; a switch of timeline is not a gap.
    public static func coverage(_ archive: WALArchive, segmentSize: UInt64) -> [WALCoverageSpan] {
        var spans: [WALCoverageSpan] = []
        var start: Date?
        var previous: (segment: WALSegment, at: Date)?
        for seg in archive.segments.keys.sorted() {
            guard let t = archive.segments[seg]?.lastModified else { continue }
            if let p = previous {
                let expected = p.segment.next(segmentSize: segmentSize)
                if seg.timeline == p.segment.timeline && seg != expected {
                    spans.append(WALCoverageSpan(from: start ?? p.at, to: p.at))
                    spans.append(WALCoverageSpan(from: p.at, to: t, missing: expected.name))
                    start = t
                }
            } else {
                start = t
            }
            previous = (seg, t)
        }
        if let start, let end = previous?.at { spans.append(WALCoverageSpan(from: start, to: end)) }
        return spans
    }

    /// The path of timelines recovery takes from `timeline` with `recovery_target_timeline =
    /// latest`: the highest timeline whose history descends from it. Each entry is a timeline
    /// and the first segment number it is read from (its branch point's segment).
    public static func path(from timeline: UInt32, archive: WALArchive, segmentSize: UInt64) -> [(tli: UInt32, beginSegment: UInt64)] {
        var best: [(UInt32, UInt64)] = [(timeline, 0)]
        for (tli, h) in archive.histories where tli > timeline {
            // History of tli: its ancestors in order, each with the LSN where the next one began.
            var chain: [(UInt32, UInt64)] = []
            var begin: UInt64 = 0
            for e in h.entries {
                chain.append((e.parent, begin))
                begin = e.switchLSN.value / segmentSize
            }
            chain.append((tli, begin))
            guard let i = chain.firstIndex(where: { $0.0 == timeline }) else { continue }
            let tail = Array(chain[i...])
            if tail.last!.0 > best.last!.0 { best = tail.enumerated().map { $0.offset == 0 ? ($0.element.0, 0) : $0.element } }
        }
        return best.map { (tli: $0.0, beginSegment: $0.1) }
    }

    /// Walks the archive from a backup's `begin` segment as PostgreSQL's recovery would: for
    /// each segment number the file of the newest timeline on the path that has begun by then.
    public static func analyze(begin: WALSegment, end: WALSegment?, archive: WALArchive, segmentSize: UInt64) -> ChainAnalysis {
        let path = path(from: begin.timeline, archive: archive, segmentSize: segmentSize)
        func expected(_ n: UInt64) -> WALSegment { segment(number: n, path: path, segmentSize: segmentSize) }
        let timelines = Set(path.map(\.tli))
        let first = begin.number(segmentSize: segmentSize)
        // The newest segment recovery could want: the highest present one on the path.
        let newest = archive.segments.keys.filter { seg in
            timelines.contains(seg.timeline) && seg.number(segmentSize: segmentSize) >= first && expected(seg.number(segmentSize: segmentSize)) == seg
        }.map { $0.number(segmentSize: segmentSize) }.max() ?? first

        var chainEnd: WALSegment?
        var broken = false
        var gaps: [ClosedRange<WALSegment>] = []
        var gapStart: WALSegment?
        var n = first
        while n <= newest {
            let seg = expected(n)
            if archive.segments[seg] != nil {
                if let g = gapStart { gaps.append(g...expected(n - 1)); gapStart = nil }
                if !broken { chainEnd = seg }
            } else {
                broken = true
                if gapStart == nil { gapStart = seg }
            }
            n += 1
        }
        if let g = gapStart { gaps.append(g...expected(newest)) }
        let endNumber = end?.number(segmentSize: segmentSize)
        let consistent = endNumber.map { e in chainEnd.map { $0.number(segmentSize: segmentSize) >= e } ?? false } ?? false
        return ChainAnalysis(timelines: path.map(\.tli), end: chainEnd, endObjectTime: chainEnd.flatMap { archive.segments[$0]?.lastModified },
                             gaps: gaps, consistent: consistent)
    }

    /// The file recovery reads for segment number `n` on a timeline path: the newest timeline
    /// that has begun by then.
    static func segment(number n: UInt64, path: [(tli: UInt32, beginSegment: UInt64)], segmentSize: UInt64) -> WALSegment {
        let per = WALSegment.segmentsPerLog(segmentSize)
        let tli = path.last { $0.beginSegment <= n }!.tli
        return WALSegment(timeline: tli, log: UInt32(n / per), segment: UInt32(n % per))
    }

    /// The segments recovery reads from `begin`, in order: the unbroken run of archived segments
    /// along the timeline path (what a restore fetches, at most).
    public static func run(from begin: WALSegment, archive: WALArchive, segmentSize: UInt64) -> [WALSegment] {
        let path = path(from: begin.timeline, archive: archive, segmentSize: segmentSize)
        var out: [WALSegment] = []
        var n = begin.number(segmentSize: segmentSize)
        while true {
            let seg = segment(number: n, path: path, segmentSize: segmentSize)
            guard archive.segments[seg] != nil else { break }
            out.append(seg)
            n += 1
        }
        return out
    }
}

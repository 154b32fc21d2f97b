import Foundation
import Layout
import Support

/// How long a restore started now would take, from what drills measured: base-backup fetch and
/// unpack throughput, WAL replay rate (bytes of WAL, segments × segment size, per second of
/// replay) and the time that does not grow with either (plan, server start, checks). Pure.
public enum RTOModel {
    /// One drill's rates.
    public struct Sample: Sendable, Codable, Equatable {
        public var drill: String
        public var fetchBytesPerSecond: Double
        /// nil: the drill replayed too little WAL to time.
        public var replayBytesPerSecond: Double?
        public var fixedSeconds: Double
    }

    /// The rates of a workload's recent drills (passed host drills that fetched a base backup),
    /// newest first, at most `limit`.
    public static func samples(_ drills: [DrillEvidence], limit: Int = 10) -> [Sample] {
        drills.filter { $0.result == .passed && $0.mode == "host" }.sorted { $0.startedAt > $1.startedAt }.compactMap { d -> Sample? in
            let base = d.databases.reduce(Int64(0)) { $0 + $1.baseBytes }
            let walBytes = d.databases.reduce(0.0) { $0 + Double($1.walSegments) * Double(min($1.walSegmentSize ?? 16 << 20, 1 << 30)) }
            let fetch = d.phases["download_unpack"] ?? 0, replay = d.phases["wal_replay"] ?? 0
            guard base > 0, fetch > 0 else { return nil }
            return Sample(drill: d.id, fetchBytesPerSecond: Double(base) / fetch,
                          replayBytesPerSecond: walBytes > 0 && replay > 0.05 ? walBytes / replay : nil,
                          fixedSeconds: max(0, d.rtoSeconds - fetch - replay))
        }.prefix(limit).map { $0 }
    }

    /// What a restore of `baseBytes` (as stored) and `walBytes` of WAL would take.
    public struct Prediction: Sendable, Codable, Equatable {
        public var seconds: Double
        /// The stated error: the slowest and fastest of the drills' rates, widened by 25 % and 3 s
        /// (a drill's own noise: server start, a busy store).
        public var lowSeconds: Double
        public var highSeconds: Double
        public var baseBytes: Int64
        public var walBytes: Int64
        /// Median rates used, and how many drills they come from.
        public var fetchBytesPerSecond: Double
        public var replayBytesPerSecond: Double?
        public var fixedSeconds: Double
        public var drills: [String]
        /// The workload's RTO objective, when judged against one.
        public var objectiveSeconds: Int?

        public func contains(_ measured: Double) -> Bool { measured >= lowSeconds && measured <= highSeconds }
    }

    static func median(_ v: [Double]) -> Double? {
        guard !v.isEmpty else { return nil }
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func seconds(_ s: Sample, replay: Double?, baseBytes: Int64, walBytes: Int64) -> Double {
        let r = s.replayBytesPerSecond ?? replay
        return s.fixedSeconds + Double(baseBytes) / s.fetchBytesPerSecond + (r.map { Double(walBytes) / $0 } ?? 0)
    }

    /// nil without a drill to measure from.
    public static func predict(_ samples: [Sample], baseBytes: Int64, walBytes: Int64) -> Prediction? {
        guard let fetch = median(samples.map(\.fetchBytesPerSecond)), let fixed = median(samples.map(\.fixedSeconds)) else { return nil }
        let replay = median(samples.compactMap(\.replayBytesPerSecond))
        let mid = Sample(drill: "", fetchBytesPerSecond: fetch, replayBytesPerSecond: replay, fixedSeconds: fixed)
        let each = samples.map { seconds($0, replay: replay, baseBytes: baseBytes, walBytes: walBytes) }
        let center = seconds(mid, replay: replay, baseBytes: baseBytes, walBytes: walBytes)
        return Prediction(seconds: center, lowSeconds: max(0, (each + [center]).min()! * 0.75 - 3), highSeconds: (each + [center]).max()! * 1.25 + 3,
                          baseBytes: baseBytes, walBytes: walBytes, fetchBytesPerSecond: fetch, replayBytesPerSecond: replay,
                          fixedSeconds: fixed, drills: samples.map(\.drill))
    }

    /// What a restore of one database started now reads: the newest restorable base backup
    /// (latest is what a restore after a loss asks for), and the WAL archived from its start on.
    public static func restoreNow(_ scan: BarmanServerScan, _ archive: WALArchive) -> (baseBytes: Int64, walBytes: Int64)? {
        guard let b = scan.backups.filter(\.restorable).max(by: { ($0.endTime ?? .distantPast) < ($1.endTime ?? .distantPast) }),
              validSegmentSize(b.segmentSize), b.size >= 0, let begin = b.beginWAL.flatMap({ WALSegment(name: $0) }) else { return nil }
        let n = archive.segments.keys.filter { $0.timeline >= begin.timeline && $0.number(segmentSize: b.segmentSize) >= begin.number(segmentSize: b.segmentSize) }.count
        let (wal, overflow) = Int64(n).multipliedReportingOverflow(by: Int64(b.segmentSize))
        return overflow ? nil : (b.size, wal)
    }

    /// A segment size PostgreSQL can have (a power of two from 1 MiB to 1 GiB): backup.info is
    /// the bucket's word, and arithmetic on a forged one must not trap.
    static func validSegmentSize(_ s: UInt64) -> Bool { s >= 1 << 20 && s <= 1 << 30 && s & (s - 1) == 0 }

    /// WAL written per hour, from the distance in segments between the base backups' starts over
    /// the time between them (nil with fewer than two, or none apart in time).
    public static func walBytesPerHour(_ backups: [BarmanBackup]) -> Double? {
        let points = backups.compactMap { b -> (Date, UInt64, UInt64)? in
            guard let t = b.beginTime, validSegmentSize(b.segmentSize), let w = b.beginWAL.flatMap({ WALSegment(name: $0) }) else { return nil }
            return (t, w.number(segmentSize: b.segmentSize), b.segmentSize)
        }.sorted { $0.0 < $1.0 }
        guard let first = points.first, let last = points.last, last.0.timeIntervalSince(first.0) >= 60, last.1 > first.1 else { return nil }
        return Double(last.1 - first.1) * Double(last.2) / (last.0.timeIntervalSince(first.0) / 3600)
    }

    /// Intervals a base-backup schedule can have, in hours.
    static let intervals = [1, 2, 3, 4, 6, 8, 12, 24, 48, 168]

    /// The worst restore of a schedule: right before the next base backup, every hour of WAL since the last to replay.
    public static func worstCase(_ samples: [Sample], baseBytes: Int64, walBytesPerHour: Double, intervalSeconds: Int) -> Prediction? {
        let wal = walBytesPerHour * Double(intervalSeconds) / 3600
        guard wal.isFinite, wal >= 0, wal < Double(Int64.max / 2) else { return nil }
        return predict(samples, baseBytes: baseBytes, walBytes: Int64(wal))
    }

    /// A warning when a base-backup interval cannot meet `rto`, with the longest interval that
    /// would: "at 2.1 GiB/h of WAL and 45 MiB/s replay, daily base backups give a 1h48m RTO; every 8h meets 1h".
    public static func advice(_ samples: [Sample], baseBytes: Int64, walBytesPerHour: Double, intervalSeconds: Int, rto: Int) -> String? {
        guard let worst = worstCase(samples, baseBytes: baseBytes, walBytesPerHour: walBytesPerHour, intervalSeconds: intervalSeconds),
              worst.seconds > Double(rto), let replay = worst.replayBytesPerSecond else { return nil }
        let meets = intervals.filter { $0 * 3600 < intervalSeconds }.last {
            (self.worstCase(samples, baseBytes: baseBytes, walBytesPerHour: walBytesPerHour, intervalSeconds: $0 * 3600)?.seconds ?? .infinity) <= Double(rto)
        }
        guard walBytesPerHour < Double(Int64.max / 2), replay < Double(Int64.max / 2) else { return nil }
        let head = "at \(formatBytes(Int64(walBytesPerHour)))/h of WAL and \(formatBytes(Int64(replay)))/s replay, base backups every \(TimeSpan.humanize(intervalSeconds)) give a \(TimeSpan.humanize(Int(worst.seconds))) RTO (objective \(TimeSpan.humanize(rto)))"
        if let meets { return head + "; every \(meets)h meets it" }
        return head + "; no base-backup schedule meets it: the fetch and fixed time alone take \(TimeSpan.humanize(Int(worst.fixedSeconds + Double(baseBytes) / worst.fetchBytesPerSecond))) (raise the objective, or restore faster)"
    }
}

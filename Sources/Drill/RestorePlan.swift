import Catalog
import Foundation
import Layout

/// What a point-in-time recovery of one barman-cloud server will do: the base backup, the WAL
/// it reads, and what that costs. Made from the bucket's listing alone (pure).
public struct RestorePlan: Sendable, Codable {
    public struct WALFile: Sendable, Codable, Equatable {
        public var name: String
        public var key: String
        public var size: Int64
        public var compression: String?
    }

    public var server: String
    /// `latest` or PostgreSQL's recovery_target_time.
    public var target: String
    public var targetTime: Date?
    /// Set for a restore point (`--at BACKUP_ID`): recovery stops as soon as the backup is consistent.
    public var immediate: Bool?
    public var backup: BarmanBackup
    /// The backup's tars, data first.
    public var archives: [ArchiveFile]
    /// Every segment recovery can read from the backup's begin_wal, in order (the prefetch list).
    public var wal: [WALFile]
    /// How many of those the target needs (estimated from the objects' write times).
    public var walNeeded: Int
    /// Timeline history files, by timeline, for `recovery_target_timeline = latest`.
    public var histories: [String: WALFile]
    public var timelines: [UInt32]
    public var pgMajor: Int
    /// The range any target must lie in: the first restorable backup's end and the end of the
    /// newest unbroken WAL run.
    public var firstRecoverable: Date
    public var newestRecoverable: Date?
    public var warnings: [String]

    public var baseBytes: Int64 { archives.reduce(0) { $0 + $1.size } }
    public var walBytes: Int64 { wal.prefix(walNeeded).reduce(0) { $0 + $1.size } }
    public var walRange: String {
        guard let first = wal.first else { return "none" }
        return walNeeded <= 1 ? first.name : "\(first.name) ... \(wal[walNeeded - 1].name)"
    }
}

public struct PlanError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

public enum RestorePlanner {
    /// Chooses the base backup for `target` and the WAL after it. A backup can reach T when it
    /// is DONE with its data and own WAL present, and ended at or before T; the newest such one
    /// is taken (FAILED and STARTED ones are never candidates).
    /// `excluding`: backups a restore found it cannot read (their archives do not unpack): the
    /// plan starts from the restorable backup before them instead.
    public static func plan(server: String, scan: BarmanServerScan, archive: WALArchive, target: RecoveryTarget, now: Date,
                            excluding: Set<String> = []) throws -> RestorePlan {
        let restorable = scan.backups.filter { $0.restorable && $0.endTime != nil && !excluding.contains($0.backupID) }
        guard !restorable.isEmpty else {
            let seen = scan.backups.map { b -> String in
                guard b.status == "DONE", !b.restorable else { return "\(b.backupID) \(b.status)" }
                let why = b.walGaps.first.map { "WAL segment \($0) is missing" }
                    ?? (b.archiveFiles.contains { $0.isData } ? "its own WAL is not all archived" : "its data tar is missing")
                return "\(b.backupID) DONE (\(why))"
            }
            throw PlanError("server \(server) has no restorable base backup\(seen.isEmpty ? " (no backups in the bucket)" : ": " + seen.joined(separator: ", "))")
        }
        // The point-in-time range starts at the oldest backup whose WAL runs on unbroken; older
        // restorable backups (long-term tiers) are restore points only.
        // Any restorable backup reaches every time from its end to the end of its unbroken WAL;
        // the message names the older ones that reach no further than their own end.
        let first = restorable.map { $0.endTime! }.min()!
        let continuous = restorable.filter { $0.walGaps.isEmpty }.map { $0.endTime! }.min()
        let points = restorable.filter { b in !b.walGaps.isEmpty && continuous.map { b.endTime! < $0 } ?? false }.sorted { $0.endTime! < $1.endTime! }
        let newest = restorable.compactMap(\.walChainEndTime).max()
        func range() -> String {
            "[\(TargetTime.rfc3339(continuous ?? first)), \(newest.map(TargetTime.rfc3339) ?? "unknown")]"
                + (points.isEmpty ? "" : "; before it, restore points only (--at BACKUP_ID): " + points.map { "\($0.backupID) (ended \(TargetTime.rfc3339($0.endTime!)))" }.joined(separator: ", "))
        }
        var warnings: [String] = []
        let chosen: BarmanBackup
        switch target {
        case .latest:
            chosen = restorable.max { $0.endTime! < $1.endTime! }!
        case .backup(let id):
            guard let b = restorable.first(where: { $0.backupID == id }) else {
                let why = scan.backups.first { $0.backupID == id }.map { "it is \($0.status)\($0.restorable ? "" : ", not restorable")" } ?? "no such backup"
                throw PlanError("backup \(id) of \(server): \(why); restorable: \(restorable.map(\.backupID).sorted().joined(separator: ", "))")
            }
            chosen = b
        case .time(let t):
            if t > now {
                throw PlanError("target \(TargetTime.rfc3339(t)) is in the future (now \(TargetTime.rfc3339(now)))")
            }
            if t < first {
                throw PlanError("target \(TargetTime.rfc3339(t)) is before the first recoverable point of \(server): the recoverable range is \(range()) (the oldest restorable base backup ended at \(TargetTime.rfc3339(first)))")
            }
            chosen = restorable.filter { $0.endTime! <= t }.max { $0.endTime! < $1.endTime! }!
            let reach = chosen.walChainEndTime ?? chosen.endTime!
            if t > reach {
                let why = chosen.walGaps.first.map { "WAL segment \($0) is missing, so recovery from \(chosen.backupID) stops at \(chosen.walChainEnd ?? "its begin")" }
                    ?? "the archive ends at \(chosen.walChainEnd ?? "?") (written \(TargetTime.rfc3339(reach)))"
                throw PlanError("target \(TargetTime.rfc3339(t)) is after the newest recoverable point of \(server): \(why); the recoverable range is \(range())")
            }
        }
        guard let begin = chosen.beginWAL.flatMap({ WALSegment(name: $0) }), let version = chosen.pgVersion else {
            throw PlanError("backup \(chosen.backupID) of \(server) has no begin_wal or version in its backup.info")
        }
        if let other = chosen.archiveFiles.first(where: { !$0.isData }) {
            throw PlanError("backup \(chosen.backupID) of \(server) has tablespace archive \(other.name).tar; restoring tablespaces is not supported")
        }
        if let c = chosen.archiveFiles.compactMap(\.compression).first(where: { $0 != Compression.gzip.rawValue }) {
            throw PlanError("backup \(chosen.backupID) of \(server) is compressed with \(Self.compressionName(c)); drctl restores plain and gzip tars only")
        }
        let segmentSize = chosen.segmentSize
        let run = WALChain.run(from: begin, archive: archive, segmentSize: segmentSize)
        var wal: [RestorePlan.WALFile] = []
        for seg in run {
            let o = archive.segments[seg]!
            wal.append(.init(name: seg.name, key: o.key, size: o.size, compression: Self.suffix(of: o.key, after: seg.name)))
        }
        if let c = wal.compactMap(\.compression).first(where: { $0 != Compression.gzip.rawValue }) {
            throw PlanError("WAL of \(server) is compressed with \(Self.compressionName(c)); drctl reads plain and gzip WAL only")
        }
        // Segments archived after T hold the first commit after it; the one that was written
        // first is the last that recovery must read (and prefetching continues past it anyway).
        var needed = wal.count
        if case .time(let t) = target {
            if let i = run.firstIndex(where: { (archive.segments[$0]!.lastModified ?? .distantFuture) >= t }) { needed = i + 1 }
        }
        // A restore point reads the backup's own WAL, to its end_wal.
        if case .backup = target, let end = chosen.endWAL, let i = run.firstIndex(where: { $0.name == end }) { needed = i + 1 }
        if case .latest = target, let gap = chosen.walGaps.first {
            warnings.append("WAL segment \(gap) is missing: recovery stops at \(chosen.walChainEnd ?? "?"); later segments are unreachable")
        }
        var histories: [String: RestorePlan.WALFile] = [:]
        for (tli, o) in archive.historyObjects {
            let name = String(format: "%08X.history", tli)
            histories[name] = .init(name: name, key: o.key, size: o.size, compression: Self.suffix(of: o.key, after: name))
        }
        let timelines = WALChain.path(from: begin.timeline, archive: archive, segmentSize: segmentSize).map(\.tli)
        var immediate: Bool?
        if case .backup = target { immediate = true }
        return RestorePlan(server: server, target: target.description, targetTime: target.date, immediate: immediate, backup: chosen,
                           archives: chosen.archiveFiles, wal: wal, walNeeded: needed, histories: histories, timelines: timelines,
                           pgMajor: version / 10000, firstRecoverable: first, newestRecoverable: newest, warnings: warnings)
    }

    /// `gz` of `.../000000010000000000000004.gz`, nil for a plain object.
    static func suffix(of key: String, after name: String) -> String? {
        guard let r = key.range(of: name, options: .backwards) else { return nil }
        let rest = key[r.upperBound...]
        return rest.hasPrefix(".") ? String(rest.dropFirst()) : nil
    }

    static func compressionName(_ suffix: String) -> String {
        ["bz2": "bzip2", "xz": "xz", "snappy": "snappy", "zst": "zstd", "lz4": "lz4"][suffix] ?? suffix
    }
}

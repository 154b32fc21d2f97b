import Foundation
import Support
import Storage
import Layout
import Codecs

/// One barman-cloud base backup as the bucket shows it.
public struct BarmanBackup: Sendable, Codable, Equatable {
    public var server: String
    public var backupID: String
    public var name: String?
    /// STARTED, DONE or FAILED (or what a newer barman writes).
    public var status: String
    public var error: String?
    public var beginTime: Date?
    public var endTime: Date?
    public var beginWAL: String?
    public var endWAL: String?
    public var beginLSN: String?
    public var endLSN: String?
    public var timeline: UInt32?
    public var systemID: String?
    public var pgVersion: Int?
    /// Bytes of the backup's tar archives in the bucket.
    public var size: Int64
    /// From the archives' key suffix: barman records it nowhere else.
    public var compression: String
    public var archives: [String]
    /// The tar objects themselves, in restore order (data first).
    public var archiveFiles: [ArchiveFile]
    /// WAL segment size (backup.info's xlog_segment_size).
    public var segmentSize: UInt64
    /// The end of the unbroken WAL run from beginWAL, and when that segment was written.
    public var walChainEnd: String?
    public var walChainEndTime: Date?
    public var walGaps: [String]
    /// DONE, its tars present, and its own WAL (beginWAL...endWAL) in the archive.
    public var restorable: Bool
    /// The data directory's size when barman took the backup (backup.info `cluster_size`).
    public var clusterSize: Int64? = nil
    /// Its data tar present and every segment from begin_wal to end_wal archived on its own
    /// timeline, by name: consistent whatever timeline history files claim (what a long-term
    /// tier keeps of it).
    public var selfContained: Bool? = nil
}

/// One tar of a base backup: `data.tar[.gz]`, `data_<n>.tar`, or `<tablespace oid>.tar`.
public struct ArchiveFile: Sendable, Codable, Equatable {
    public var name: String
    public var key: String
    public var size: Int64
    /// The key's suffix ("gz", ...), nil for a plain tar.
    public var compression: String?
    /// PGDATA itself (data, data_1, ...) rather than a tablespace.
    public var isData: Bool { name == "data" || (name.hasPrefix("data_") && name.dropFirst(5).allSatisfy(\.isNumber)) }
}

/// A barman-cloud server (CNPG serverName) in the bucket: its backups and WAL.
public struct BarmanServerScan: Sendable, Codable {
    public var server: String
    public var backups: [BarmanBackup]
    public var walSegments: Int
    public var partialSegments: [String]
    public var timelines: [UInt32]
    public var newestSegment: String?
    /// When the newest segment was archived (its object's Last-Modified).
    public var newestSegmentTime: Date?
    /// Keys under the server that barman does not write (ignored, as barman ignores them).
    public var unrecognised: Int
    /// Problems reading metadata (unparsable backup.info, history), by key.
    public var problems: [String]
}

public enum BarmanScanner {
    /// Reads one server's archive: every backup.info, the WAL listing, the history files.
    public static func scan(_ reader: any StorageReader, layout: BarmanLayout, server: String) throws -> BarmanServerScan {
        try scanArchive(reader, layout: layout, server: server).scan
    }

    /// `scan`, plus the WAL archive as listed: what a restore plans its WAL fetches from.
    public static func scanArchive(_ reader: any StorageReader, layout: BarmanLayout, server: String) throws -> (scan: BarmanServerScan, archive: WALArchive) {
        var archive = WALArchive()
        var infoKeys: [String: String] = [:]
        var tars: [String: [(name: String, compression: Compression?, size: Int64, key: String)]] = [:]
        var historyKeys: [(UInt32, String, Compression?)] = []
        var unrecognised = 0
        try reader.list(prefix: layout.serverPrefix(server), delimiter: nil, startAfter: nil) { objects, _ in
            for o in objects {
                switch layout.parse(o.key) {
                case .backupInfo(_, let id)?: infoKeys[id] = o.key
                case .backupArchive(_, let id, let name, let c)?: tars[id, default: []].append((name, c, o.size, o.key))
                case .walSegment(_, let seg, _)?: archive.segments[seg] = .init(key: o.key, size: o.size, lastModified: o.lastModified)
                case .partialSegment(_, let seg, _)?: archive.partials[seg] = .init(key: o.key, size: o.size, lastModified: o.lastModified)
                case .timelineHistory(_, let tli, let c)?:
                    historyKeys.append((tli, o.key, c))
                    archive.historyObjects[tli] = .init(key: o.key, size: o.size, lastModified: o.lastModified)
                case .backupHistory?: break
                case nil: unrecognised += 1
                }
            }
        }
        var problems: [String] = []
        for (tli, key, c) in historyKeys {
            do {
                let text = try decompressText(reader.read(key), compression: c, key: key)
                archive.histories[tli] = try TimelineHistory(timeline: tli, parsing: text)
            } catch {
                problems.append("\(key): \(error)")
            }
        }
        var backups: [BarmanBackup] = []
        for (id, key) in infoKeys.sorted(by: { $0.key < $1.key }) {
            let info: BackupInfo
            do {
                info = try BackupInfo(parsing: String(decoding: try reader.read(key), as: UTF8.self))
            } catch {
                problems.append("\(key): \(error)")
                continue
            }
            let parts = tars[id] ?? []
            let compressions = Set(parts.map { $0.compression?.rawValue ?? "none" })
            var b = BarmanBackup(server: server, backupID: id, name: info.backupName, status: info.statusText, error: info.error,
                                 beginTime: info.beginTime, endTime: info.endTime, beginWAL: info.beginWAL?.name, endWAL: info.endWAL?.name,
                                 beginLSN: info.beginLSN?.description, endLSN: info.endLSN?.description, timeline: info.timeline,
                                 systemID: info.systemID, pgVersion: info.version, size: parts.reduce(0) { $0 + $1.size },
                                 compression: compressions.sorted().joined(separator: ","), archives: parts.map(\.name).sorted(),
                                 archiveFiles: parts.map { ArchiveFile(name: $0.name, key: $0.key, size: $0.size, compression: $0.compression?.rawValue) }
                                    .sorted { ($0.isData ? 0 : 1, $0.name.count, $0.name) < ($1.isData ? 0 : 1, $1.name.count, $1.name) },
                                 segmentSize: info.segmentSize,
                                 walChainEnd: nil, walChainEndTime: nil, walGaps: [], restorable: false,
                                 clusterSize: info.clusterSize.map { max($0, 0) })
            if let begin = info.beginWAL {
                let chain = WALChain.analyze(begin: begin, end: info.endWAL, archive: archive, segmentSize: info.segmentSize)
                b.walChainEnd = chain.end?.name
                b.walChainEndTime = chain.endObjectTime
                b.walGaps = chain.gaps.map { $0.lowerBound == $0.upperBound ? $0.lowerBound.name : "\($0.lowerBound.name)-\($0.upperBound.name)" }
                b.restorable = info.status == .done && parts.contains { $0.name == "data" } && chain.consistent
                if let end = info.endWAL, end.timeline == begin.timeline {
                    let (lo, hi) = (begin.number(segmentSize: info.segmentSize), end.number(segmentSize: info.segmentSize))
                    let per = WALSegment.segmentsPerLog(info.segmentSize)
                    b.selfContained = info.status == .done && parts.contains { $0.name == "data" } && lo <= hi && hi - lo < 1 << 20
                        && (lo...hi).allSatisfy { n in archive.segments[WALSegment(timeline: begin.timeline, log: UInt32(n / per), segment: UInt32(n % per))] != nil }
                }
            }
            backups.append(b)
        }
        let segs = archive.segments.keys.sorted()
        let scan = BarmanServerScan(server: server, backups: backups, walSegments: segs.count,
                                partialSegments: archive.partials.keys.sorted().map(\.name),
                                timelines: Array(Set(segs.map(\.timeline))).sorted(), newestSegment: segs.last?.name,
                                newestSegmentTime: segs.last.flatMap { archive.segments[$0]?.lastModified },
                                unrecognised: unrecognised, problems: problems)
        return (scan, archive)
    }

    /// Server names under a barman destination: the first-level folders.
    public static func servers(_ reader: any StorageReader, layout: BarmanLayout) throws -> [String] {
        var out: [String] = []
        try reader.list(prefix: layout.root.isEmpty ? "" : layout.root + "/", delimiter: "/", startAfter: nil) { _, prefixes in
            out += prefixes.map { String($0.dropFirst(layout.root.isEmpty ? 0 : layout.root.count + 1).dropLast()) }
        }
        return out
    }

    public static func decompressText(_ bytes: [UInt8], compression: Compression?, key: String) throws -> String {
        guard let compression else { return String(decoding: bytes, as: UTF8.self) }
        guard compression == .gzip else {
            throw LocalError("\(key): \(compression.rawValue)-compressed history files are not supported yet (gzip and plain are)")
        }
        return String(decoding: try Gzip.decompress(bytes, limit: 1 << 20), as: UTF8.self)
    }
}

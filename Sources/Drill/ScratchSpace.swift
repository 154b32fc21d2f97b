import Foundation
import Support

/// How much disk a host restore needs, checked before its first byte is fetched: a restore that
/// fills the disk fails late and can take the host's other services with it (in a pod, the kubelet
/// evicts drctl once its emptyDir passes `sizeLimit`).
public enum ScratchSpace {
    /// WAL PostgreSQL may keep in pg_wal during recovery: every restored segment stays until the
    /// next restartpoint, which replay forces at `max_wal_size` (drctl sets it to this: four times
    /// PostgreSQL's default, so replay stops to flush a quarter as often; BackupConfiguration).
    public static let walKept: Int64 = 4 << 30
    /// Room left over for the server's own files (logs, the control file, a new timeline's WAL).
    static let margin: Int64 = 64 << 20

    /// Bytes the data directory needs: the cluster's size as barman measured it (backup.info
    /// `cluster_size`), else the archives' size (a lower bound when they are compressed), plus the
    /// WAL recovery may keep.
    public static func dataDirectory(clusterSize: Int64?, archivedBytes: Int64, walNeeded: Int, segmentSize: UInt64) -> Int64 {
        let data = max(clusterSize ?? 0, archivedBytes, 0)
        let seg = Int64(clamping: segmentSize)
        let wal = min(Int64(walNeeded).multipliedReportingOverflow(by: seg).overflow ? walKept : Int64(walNeeded) * seg, walKept)
        return data.addingReportingOverflow(wal + margin).overflow ? Int64.max : data + wal + margin
    }

    /// Bytes the WAL read-ahead needs in the scratch directory.
    public static func spool(prefetchWindow: Int, segmentSize: UInt64) -> Int64 {
        Int64(max(prefetchWindow, 1) + 1) * Int64(clamping: segmentSize)
    }

    /// Free bytes for an unprivileged writer on the filesystem of `path` (or its nearest existing
    /// parent), and that filesystem's device; nil when it cannot be asked.
    public static func free(at path: String) -> (bytes: Int64, device: UInt64)? {
        var p = path
        while !p.isEmpty {
            var fs = statvfs(), st = stat()
            if statvfs(p, &fs) == 0, stat(p, &st) == 0 {
                return (Int64(clamping: UInt64(fs.f_bavail).multipliedReportingOverflow(by: UInt64(fs.f_frsize)).partialValue), UInt64(st.st_dev))
            }
            guard errno == ENOENT, p != "/" else { return nil }
            p = (p as NSString).deletingLastPathComponent
        }
        return nil
    }

    /// nil when every need fits; else what is short, for the error. `needs`: (what, directory, bytes);
    /// needs on one filesystem are added up.
    public static func shortfall(_ needs: [(what: String, directory: String, bytes: Int64)],
                                 free: (String) -> (bytes: Int64, device: UInt64)?) -> String? {
        var byDevice: [UInt64: (free: Int64, need: Int64, parts: [String])] = [:]
        var order: [UInt64] = []
        for n in needs {
            guard let f = free(n.directory) else { continue }
            if byDevice[f.device] == nil { order.append(f.device); byDevice[f.device] = (f.bytes, 0, []) }
            byDevice[f.device]!.need = byDevice[f.device]!.need.addingReportingOverflow(n.bytes).overflow ? .max : byDevice[f.device]!.need + n.bytes
            byDevice[f.device]!.parts.append("\(n.what) about \(formatBytes(n.bytes)) in \(n.directory)")
        }
        let short = order.compactMap { d -> String? in
            let e = byDevice[d]!
            return e.need > e.free ? "\(e.parts.joined(separator: " and ")), but that filesystem has \(formatBytes(e.free)) free" : nil
        }
        return short.isEmpty ? nil : short.joined(separator: "; ")
    }
}

/// Compression as barman-cloud records it: only in the key's suffix.
public enum Compression: String, Sendable, CaseIterable {
    case gzip = "gz", bzip2 = "bz2", xz, snappy, zstd = "zst", lz4
}

/// What drctl itself reads of barman-cloud's compressions (restore, verify, copy with encryption).
public enum BarmanCompression {
    public static let readable: Set<Compression> = [.gzip]
    /// The policy's names (CNPG's `compression` values) drctl reads: gzip, and none.
    public static let readableNames: Set<String> = ["none", "gzip"]
}

/// One object of a barman-cloud archive, recognised from its key.
public enum BarmanObject: Sendable, Equatable {
    case backupInfo(server: String, backupID: String)
    /// `data.tar`, `<tablespace oid>.tar`, `data_<n>.tar`, with their compression.
    case backupArchive(server: String, backupID: String, name: String, compression: Compression?)
    case walSegment(server: String, segment: WALSegment, compression: Compression?)
    /// The last, partial segment of an old timeline after a promotion.
    case partialSegment(server: String, segment: WALSegment, compression: Compression?)
    /// `<segment>.<offset>.backup`: written by pg_backup_stop for each finished backup.
    case backupHistory(server: String, segment: WALSegment, offset: UInt32, compression: Compression?)
    case timelineHistory(server: String, timeline: UInt32, compression: Compression?)

    public var server: String {
        switch self {
        case .backupInfo(let s, _), .backupArchive(let s, _, _, _), .walSegment(let s, _, _), .partialSegment(let s, _, _),
             .backupHistory(let s, _, _, _), .timelineHistory(let s, _, _):
            return s
        }
    }
}

/// The keys barman-cloud (and so CNPG, in-tree or through the Barman Cloud Plugin) writes
/// under `<destinationPath>/<serverName>/`. Every key is built and recognised here; nothing
/// else in drctl concatenates barman keys.
public struct BarmanLayout: Sendable {
    /// The key prefix of the destinationPath inside the bucket, without slashes ("" for the root).
    public let root: String

    public init(root: String) {
        self.root = trimSlashes(root)
    }

    var rootSlash: String { root.isEmpty ? "" : root + "/" }
    /// A key below the destination (`<server>/base/<id>/data.tar`): the same in every copy of it.
    public func relative(_ key: String) -> String { key.hasPrefix(rootSlash) ? String(key.dropFirst(rootSlash.count)) : key }
    /// The full key of a `relative` one.
    public func absolute(_ relative: String) -> String { rootSlash + relative }
    public func serverPrefix(_ server: String) -> String { "\(rootSlash)\(server)/" }
    public func basePrefix(_ server: String) -> String { "\(serverPrefix(server))base/" }
    public func walsPrefix(_ server: String) -> String { "\(serverPrefix(server))wals/" }
    public func backupInfoKey(server: String, backupID: String) -> String { "\(basePrefix(server))\(backupID)/backup.info" }

    public func key(for o: BarmanObject) -> String {
        func suffix(_ c: Compression?) -> String { c.map { ".\($0.rawValue)" } ?? "" }
        switch o {
        case .backupInfo(let s, let id): return backupInfoKey(server: s, backupID: id)
        case .backupArchive(let s, let id, let name, let c): return "\(basePrefix(s))\(id)/\(name).tar\(suffix(c))"
        case .walSegment(let s, let seg, let c): return "\(walsPrefix(s))\(seg.hashDirectory)/\(seg.name)\(suffix(c))"
        case .partialSegment(let s, let seg, let c): return "\(walsPrefix(s))\(seg.hashDirectory)/\(seg.name).partial\(suffix(c))"
        case .backupHistory(let s, let seg, let off, let c): return "\(walsPrefix(s))\(seg.hashDirectory)/\(seg.name).\(hex8(off)).backup\(suffix(c))"
        case .timelineHistory(let s, let tl, let c): return "\(walsPrefix(s))\(hex8(tl)).history\(suffix(c))"
        }
    }

    /// Recognises a key; nil for anything barman does not write (which barman ignores too).
    public func parse(_ key: String) -> BarmanObject? {
        guard key.hasPrefix(rootSlash) else { return nil }
        let parts = key.dropFirst(rootSlash.count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 3, !parts[0].isEmpty else { return nil }
        let server = String(parts[0])
        switch parts[1] {
        case "base":
            guard parts.count == 4, isBackupID(parts[2]) else { return nil }
            let id = String(parts[2]), file = parts[3]
            if file == "backup.info" { return .backupInfo(server: server, backupID: id) }
            let (stem, c) = Self.splitCompression(file)
            guard stem.hasSuffix(".tar") else { return nil }
            let name = String(stem.dropLast(4))
            guard !name.isEmpty else { return nil }
            return .backupArchive(server: server, backupID: id, name: name, compression: c)
        case "wals":
            let (stem, c) = Self.splitCompression(parts[parts.count - 1])
            if parts.count == 3 {
                // <TL>.history sits directly under wals/.
                guard stem.hasSuffix(".history"), let tl = hexUInt32(stem.dropLast(8)), stem.count == 16 else { return nil }
                return .timelineHistory(server: server, timeline: tl, compression: c)
            }
            guard parts.count == 4 else { return nil }
            let dir = parts[2]
            if let seg = WALSegment(name: stem) {
                return seg.hashDirectory == dir ? .walSegment(server: server, segment: seg, compression: c) : nil
            }
            if stem.hasSuffix(".partial"), let seg = WALSegment(name: stem.dropLast(8)), seg.hashDirectory == dir {
                return .partialSegment(server: server, segment: seg, compression: c)
            }
            let pieces = stem.split(separator: ".")
            if pieces.count == 3, pieces[2] == "backup", let seg = WALSegment(name: pieces[0]), pieces[1].count == 8,
               let off = hexUInt32(pieces[1]), seg.hashDirectory == dir {
                return .backupHistory(server: server, segment: seg, offset: off, compression: c)
            }
            return nil
        default:
            return nil
        }
    }

    /// `name.tar.gz` -> (`name.tar`, .gzip).
    static func splitCompression(_ s: Substring) -> (Substring, Compression?) {
        if let dot = s.lastIndex(of: "."), let c = Compression(rawValue: String(s[s.index(after: dot)...])) {
            return (s[..<dot], c)
        }
        return (s, nil)
    }

    /// barman's backup id: the barman process's local time, `YYYYMMDDTHHMMSS`.
    func isBackupID(_ s: Substring) -> Bool {
        s.count == 15 && s.utf8.enumerated().allSatisfy { i, c in i == 8 ? c == UInt8(ascii: "T") : (48...57).contains(c) }
    }
}

/// A bucket-relative prefix without leading or trailing slashes ("" for the bucket root).
func trimSlashes(_ s: String) -> String {
    var r = Substring(s)
    while r.hasPrefix("/") { r = r.dropFirst() }
    while r.hasSuffix("/") { r = r.dropLast() }
    return String(r)
}

func hexUInt32(_ s: Substring) -> UInt32? {
    guard s.count == 8, s.utf8.allSatisfy({ (48...57).contains($0) || (65...70).contains($0) }) else { return nil }
    return UInt32(s, radix: 16)
}

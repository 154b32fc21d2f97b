import Foundation
import Support

/// One object under a Velero storage location's prefix, recognised from its key
/// (Velero's `pkg/persistence/object_store_layout.go`).
public enum VeleroObject: Sendable, Equatable {
    /// `backups/<name>/velero-backup.json`: the Backup object, rewritten as the backup progresses.
    case backupMetadata(backup: String)
    /// `backups/<name>/<name>.tar.gz`: every backed-up API object.
    case backupContents(backup: String)
    /// `backups/<name>/<name>-<suffix>`: logs, resource list, results, volume info, ….
    case backupSideFile(backup: String, suffix: String)
    case restoreFile(restore: String, file: String)
    /// kopia/, restic/ (file-system backup repositories), metadata/, plugins/.
    case other(area: String)
}

public struct VeleroLayout: Sendable {
    public static let areas: Set<String> = ["backups", "restores", "kopia", "restic", "metadata", "plugins"]
    /// Suffixes Velero writes beside a backup's tarball.
    public static let sideFiles = ["logs.gz", "resource-list.json.gz", "results.gz", "volumeinfo.json.gz", "itemoperations.json.gz",
                                   "podvolumebackups.json.gz", "volumesnapshots.json.gz", "csi-volumesnapshots.json.gz",
                                   "csi-volumesnapshotcontents.json.gz", "csi-volumesnapshotclasses.json.gz"]
    public let root: String

    public init(root: String) {
        self.root = trimSlashes(root)
    }

    var rootSlash: String { root.isEmpty ? "" : root + "/" }

    /// The Velero Schedule drctl renders for a policy's tier; Velero names its backups
    /// `<schedule>-<timestamp>` and labels them velero.io/schedule-name.
    public static func scheduleName(policy: String, tier: String) -> String { "\(policy)-\(tier)" }
    public var backupsPrefix: String { "\(rootSlash)backups/" }
    public func metadataKey(backup: String) -> String { "\(backupsPrefix)\(backup)/velero-backup.json" }
    public func contentsKey(backup: String) -> String { "\(backupsPrefix)\(backup)/\(backup).tar.gz" }
    public func sideFileKey(backup: String, suffix: String) -> String { "\(backupsPrefix)\(backup)/\(backup)-\(suffix)" }

    public func parse(_ key: String) -> VeleroObject? {
        guard key.hasPrefix(rootSlash) else { return nil }
        let parts = key.dropFirst(rootSlash.count).split(separator: "/", omittingEmptySubsequences: false)
        guard let area = parts.first, Self.areas.contains(String(area)) else { return nil }
        switch area {
        case "backups":
            guard parts.count == 3, !parts[1].isEmpty else { return nil }
            let name = String(parts[1]), file = parts[2]
            if file == "velero-backup.json" { return .backupMetadata(backup: name) }
            if file == "\(name).tar.gz" { return .backupContents(backup: name) }
            if file.hasPrefix("\(name)-") {
                let suffix = String(file.dropFirst(name.count + 1))
                return Self.sideFiles.contains(suffix) ? .backupSideFile(backup: name, suffix: suffix) : nil
            }
            return nil
        case "restores":
            guard parts.count == 3, !parts[1].isEmpty else { return nil }
            return .restoreFile(restore: String(parts[1]), file: String(parts[2]))
        default:
            return .other(area: String(area))
        }
    }
}

/// The parts of a Velero Backup object (`velero-backup.json`) that decide whether it is a
/// restore point. Unknown fields are ignored.
public struct VeleroBackup: Sendable, Decodable {
    public struct Metadata: Sendable, Decodable {
        public var name: String
        public var namespace: String?
        public var labels: [String: String]?
    }
    public struct Spec: Sendable, Decodable {
        public var includedNamespaces: [String]?
        public var excludedNamespaces: [String]?
        public var includeClusterResources: Bool?
        public var ttl: String?
        public var storageLocation: String?
    }
    public struct Progress: Sendable, Decodable {
        public var totalItems: Int?
        public var itemsBackedUp: Int?
    }
    public struct Status: Sendable, Decodable {
        public var phase: String?
        public var startTimestamp: Date?
        public var completionTimestamp: Date?
        public var expiration: Date?
        public var formatVersion: String?
        public var version: Int?
        public var errors: Int?
        public var warnings: Int?
        public var failureReason: String?
        public var validationErrors: [String]?
        public var progress: Progress?
    }

    public var metadata: Metadata
    public var spec: Spec?
    public var status: Status?

    public enum Phase: String, Sendable {
        case completed = "Completed", partiallyFailed = "PartiallyFailed", failed = "Failed", failedValidation = "FailedValidation"
    }

    public var phase: String { status?.phase ?? "New" }
    /// Velero rewrites velero-backup.json until one of these; anything else is re-read later.
    public var isTerminal: Bool { Phase(rawValue: phase) != nil }
    public var schedule: String? { metadata.labels?["velero.io/schedule-name"] }

    /// Whether a backup that covers `namespace` was taken of it (`*` and exclusions honoured).
    public func covers(namespace: String) -> Bool {
        let included = spec?.includedNamespaces ?? []
        let excluded = spec?.excludedNamespaces ?? []
        if excluded.contains(where: { VeleroNamespaces.matches($0, namespace) }) { return false }
        return included.isEmpty || included.contains { VeleroNamespaces.matches($0, namespace) }
    }

    public static func decode(_ data: Data) throws -> VeleroBackup {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { dec in
            // drctl's own parser: ICU's ISO 8601 parser with fractional seconds traps (SIGFPE) on
            // a long fraction in a malformed date (found by drctl-fuzz velero-backup).
            let s = try dec.singleValueContainer().decode(String.self)
            if let date = RFC3339.parse(s) { return date }
            throw DecodingError.dataCorrupted(.init(codingPath: dec.codingPath, debugDescription: "not an RFC 3339 time: \(s)"))
        }
        return try d.decode(VeleroBackup.self, from: data)
    }
}

/// How Velero reads namespace lists, in backups and restores alike.
public enum VeleroNamespaces {
    /// Whether an `includedNamespaces`/`excludedNamespaces` entry selects `namespace`. `*` alone
    /// is every namespace; since Velero 1.18 entries are glob patterns (`*`, `?`, `[abc]`,
    /// `[a-z]`; velero.io/docs/main/namespace-glob-patterns). Older Velero compares other
    /// entries literally, but no namespace name can hold these characters, so reading every
    /// entry as a pattern never selects less than Velero does: the safe side for a drill.
    public static func matches(_ pattern: String, _ namespace: String) -> Bool {
        if pattern == "*" { return true }
        guard isPattern(pattern) else { return pattern == namespace }
        return fnmatch(pattern, namespace, 0) == 0
    }

    public static func isPattern(_ entry: String) -> Bool {
        entry.contains { "*?[".contains($0) }
    }

    /// The namespaces a backup holds, from its `-resource-list.json.gz` (keys `group/version/Kind`,
    /// items `namespace/name` for namespaced objects, `name` for cluster-scoped ones): the
    /// Namespace objects and every namespace a namespaced item is in.
    public static func inResourceList(_ list: [String: [String]]) -> Set<String> {
        var out = Set(list["v1/Namespace"] ?? [])
        for (key, items) in list where key != "v1/Namespace" {
            for item in items {
                if let slash = item.firstIndex(of: "/") { out.insert(String(item[..<slash])) }
            }
        }
        return out
    }
}

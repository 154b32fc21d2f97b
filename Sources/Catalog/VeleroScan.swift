import Foundation
import Storage
import Layout
import Support

/// One Velero backup as its storage location shows it.
public struct VeleroBackupEntry: Sendable, Codable, Equatable {
    public var name: String
    public var schedule: String?
    public var phase: String
    /// Completed, PartiallyFailed, Failed or FailedValidation: Velero will not rewrite it.
    public var terminal: Bool
    public var startTime: Date?
    public var completionTime: Date?
    public var expiration: Date?
    public var includedNamespaces: [String]
    public var errors: Int
    public var warnings: Int
    public var contentsSize: Int64?
    /// Completed (or PartiallyFailed when allowed) with its contents tarball present.
    public var restorePoint: Bool
    public var problem: String?
}

public enum VeleroScanner {
    public static func scan(_ reader: any StorageReader, layout: VeleroLayout, allowPartiallyFailed: Bool = false) throws -> [VeleroBackupEntry] {
        var metadata: [String: String] = [:]
        var contents: [String: Int64] = [:]
        try reader.list(prefix: layout.backupsPrefix, delimiter: nil, startAfter: nil) { objects, _ in
            for o in objects {
                switch layout.parse(o.key) {
                case .backupMetadata(let b)?: metadata[b] = o.key
                case .backupContents(let b)?: contents[b] = o.size
                default: break
                }
            }
        }
        var out: [VeleroBackupEntry] = []
        for (name, key) in metadata.sorted(by: { $0.key < $1.key }) {
            do {
                let b = try VeleroBackup.decode(Data(try reader.read(key)))
                let ok = b.phase == "Completed" || (allowPartiallyFailed && b.phase == "PartiallyFailed")
                out.append(VeleroBackupEntry(name: name, schedule: b.schedule, phase: b.phase, terminal: b.isTerminal,
                                             startTime: b.status?.startTimestamp, completionTime: b.status?.completionTimestamp,
                                             expiration: b.status?.expiration, includedNamespaces: b.spec?.includedNamespaces ?? [],
                                             errors: b.status?.errors ?? 0, warnings: b.status?.warnings ?? 0, contentsSize: contents[name],
                                             restorePoint: ok && contents[name] != nil,
                                             problem: ok && contents[name] == nil ? "\(layout.contentsKey(backup: name)) is missing" : nil))
            } catch {
                out.append(VeleroBackupEntry(name: name, schedule: nil, phase: "Unreadable", terminal: false, startTime: nil, completionTime: nil,
                                             expiration: nil, includedNamespaces: [], errors: 0, warnings: 0, contentsSize: contents[name],
                                             restorePoint: false, problem: "\(key): \(error)"))
            }
        }
        return out
    }
}

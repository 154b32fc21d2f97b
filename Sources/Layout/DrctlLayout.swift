import Foundation

/// drctl's own keys in a bucket, in one place as BarmanLayout holds barman's: drill evidence
/// and prune journals under the store's drctl prefix. Pure.
public struct DrctlLayout: Sendable, Equatable {
    public let root: String

    public init(root: String) {
        self.root = root.split(separator: "/").joined(separator: "/")
    }

    var rootSlash: String { root.isEmpty ? "" : root + "/" }

    /// A key's name below drctl's prefix (`evidence/app/<id>.json`): what a sealed record is
    /// bound to, so it verifies in a copy laid out under another prefix and nowhere else.
    public func recordName(_ key: String) -> String {
        key.hasPrefix(rootSlash) ? String(key.dropFirst(rootSlash.count)) : key
    }

    /// Where a copy keeps a new version of an object the source changed after it was copied
    /// (write-once kinds are never overwritten on a copy): beside the original, under drctl's
    /// prefix, named by the original's key and the time the change was found.
    public func changedVersionKey(source: String, key: String, stamp: String) -> String {
        rootSlash + Self.changedFolder + "\(source)/\(key)@\(stamp)"
    }

    /// Where the catalog indexes evidence from.
    public var evidencePrefix: String { rootSlash + "evidence/" }

    /// One workload's drill evidence.
    public func evidencePrefix(workload: String) -> String { evidencePrefix + "\(workload)/" }

    /// One drill's evidence: ids start with the UTC start time, so keys sort by time.
    public func evidenceKey(workload: String, id: String) -> String { evidencePrefix(workload: workload) + id + ".json" }

    /// Site rehearsals (`drctl rehearse`), in the store the site came back from.
    public var rehearsalPrefix: String { rootSlash + "rehearsals/" }
    public func rehearsalKey(id: String) -> String { rehearsalPrefix + id + ".json" }

    /// One barman server's prune journal.
    public func prunePrefix(server: String) -> String { rootSlash + "prune/\(server)/" }

    /// A prune's plan, written before anything is deleted, and its outcome, written after: a
    /// plan without its outcome was interrupted.
    public func prunePlanKey(server: String, stamp: String) -> String { prunePrefix(server: server) + stamp + ".json" }
    public func pruneOutcomeKey(server: String, stamp: String) -> String { prunePrefix(server: server) + stamp + ".done.json" }

    /// The stamp of a plan key's name under the journal, or nil for an outcome or anything else.
    public static func pruneStamp(planName name: String) -> String? {
        guard name.hasSuffix(".json"), !name.hasSuffix(".done.json"), !name.contains("/") else { return nil }
        return String(name.dropLast(5))
    }

    /// A leader-only job's schedule slots (`drctl serve` with several replicas): claimed before
    /// the job starts, so a slot runs once across replicas and failovers, and ended after.
    public func slotPrefix(job: String) -> String { rootSlash + "slots/\(job)/" }
    public func slotKey(job: String, stamp: String) -> String { slotPrefix(job: job) + stamp + ".json" }
    public func slotDoneKey(job: String, stamp: String) -> String { slotPrefix(job: job) + stamp + ".done.json" }

    /// Below drctl's prefix in a copy: what each copy into it has put there. Never copied itself.
    public static let copiesFolder = "copies/"
    /// Below drctl's prefix in a copy: new versions of objects the source changed (see changedVersionKey). Never copied itself.
    public static let changedFolder = "changed/"

    /// The record of the copy of store `source` into the store of this layout.
    public func copyStateKey(source: String) -> String { rootSlash + Self.copiesFolder + source + ".json" }

    /// `cnpg` -> `drctl`, `backups/cnpg` -> `backups/drctl`: drctl's prefix beside a tool's
    /// destination when no policy names one.
    public static func beside(_ path: String) -> DrctlLayout {
        let trimmed = path.split(separator: "/").joined(separator: "/")
        guard let slash = trimmed.lastIndex(of: "/") else { return DrctlLayout(root: "drctl") }
        return DrctlLayout(root: String(trimmed[..<slash]) + "/drctl")
    }
}

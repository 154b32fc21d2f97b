import Foundation
import Hashing
import Layout
import Records
import Storage
import Support

/// What a prune did: deleted, left under Object Lock, failed.
public struct PruneOutcome: Codable, Sendable {
    public var deleted = 0
    public var locked: [LockedObject] = []
    public var failed: [String] = []
    /// For an interrupted prune closed by a later run: that run's record, and what it kept of this one.
    public var supersededBy: String?
    public var keptNoLongerSelected: Int?
    public var refused: Int?

    public init(deleted: Int = 0, supersededBy: String? = nil, keptNoLongerSelected: Int? = nil, refused: Int? = nil) {
        self.deleted = deleted
        self.supersededBy = supersededBy
        self.keptNoLongerSelected = keptNoLongerSelected
        self.refused = refused
    }

    public var summary: String {
        var s = "deleted \(deleted) objects"
        if !locked.isEmpty { s += "; \(locked.count) left under Object Lock" }
        if !failed.isEmpty { s += "; \(failed.count) not deleted" }
        return s
    }
}

/// A barman server's prune journal under drctl's prefix (DrctlLayout): the plan, written before
/// any deletion, and the outcome, written after. A plan without its outcome was interrupted.
public struct PruneJournal {
    public let storage: any StorageWriter
    public let layout: DrctlLayout
    public let server: String

    public init(storage: any StorageWriter, layout: DrctlLayout, server: String) {
        self.storage = storage
        self.layout = layout
        self.server = server
    }

    /// Where a record is, for messages: `s3://bucket/drctl/prune/db/<stamp>.json`.
    public func planLocation(_ stamp: String) -> String { "\(storage.location)/\(layout.prunePlanKey(server: server, stamp: stamp))" }

    /// Sealed with drctl's record key: a journal entry steers what a later run deletes or
    /// considers finished, so one drctl did not write counts for nothing.
    public var keys: RecordKeyring = .current

    public func record(_ plan: PrunePlan, stamp: String) throws {
        let key = layout.prunePlanKey(server: server, stamp: stamp)
        try storage.put(key, bytes: try RecordSeal.seal(plan, kind: RecordKind.prunePlan, name: layout.recordName(key), keys: keys), contentType: "application/json")
    }

    public func finish(_ stamp: String, _ outcome: PruneOutcome) throws {
        guard outcome.failed.isEmpty else { return }   // unfinished: the next --apply tries again
        let key = layout.pruneOutcomeKey(server: server, stamp: stamp)
        try storage.put(key, bytes: try RecordSeal.seal(outcome, kind: RecordKind.pruneOutcome, name: layout.recordName(key), keys: keys), contentType: "application/json")
    }

    /// Recorded plans without an authentic outcome, oldest first, and the journal's objects that
    /// do not verify. A plan that does not verify is not drctl's: it is never replayed (named in
    /// `unauthenticated`). An outcome that does not verify closes nothing: its plan stays open,
    /// and a replay deletes only what today's plan deletes anyway.
    public func unfinished() throws -> (records: [(stamp: String, plan: PrunePlan)], unauthenticated: [String]) {
        let prefix = layout.prunePrefix(server: server)
        let names = Set(try storage.listAll(prefix: prefix).map { String($0.key.dropFirst(prefix.count)) })
        var forged: [String] = []
        var records: [(stamp: String, plan: PrunePlan)] = []
        for stamp in names.compactMap(DrctlLayout.pruneStamp(planName:)).sorted() {
            if names.contains(stamp + ".done.json") {
                let key = layout.pruneOutcomeKey(server: server, stamp: stamp)
                let bytes = (try? storage.read(key, limit: 1 << 20)) ?? []
                let (_, how) = RecordSeal.open(bytes, as: PruneOutcome.self, kind: RecordKind.pruneOutcome, name: layout.recordName(key), keys: keys)
                if how.isAuthentic { continue }
                forged.append(key)
            }
            let key = layout.prunePlanKey(server: server, stamp: stamp)
            // Unreadable (too large, gone) counts as not drctl's, like any record that does not verify.
            let bytes = (try? storage.read(key, limit: 64 << 20)) ?? []
            let (plan, how) = RecordSeal.open(bytes, as: PrunePlan.self, kind: RecordKind.prunePlan, name: layout.recordName(key), keys: keys)
            guard let plan, how.isAuthentic else { forged.append(key); continue }
            records.append((stamp, plan))
        }
        return (records, forged)
    }

    /// A record's name: unique even for two runs in one second, as a name must never be reused.
    public static func stamp(_ now: Date) -> String {
        RFC3339.format(now) + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    }
}

/// One barman-cloud server's retention, planned and (with `apply`) executed through a store:
/// what `drctl prune` runs. The plan comes from BarmanRetention (pure); this adds what only the
/// store can say (Object Lock, interrupted earlier runs) and the deletion itself.
public struct BarmanPrune {
    public let storage: any StorageWriter
    public let layout: BarmanLayout
    public let server: String
    public var journal: PruneJournal
    public let window: RecoveryWindow
    public let minimumRedundancy: Int
    /// Base backups kept beyond the window, each with only its own WAL.
    public let tiers: RetentionTiers
    /// Delete on barman's metadata alone, without a drill's proof (`--trust-unproven`).
    public var trustUnproven = false
    /// The keys evidence is verified with and the journal sealed with (the journal's own).
    public var keys: RecordKeyring {
        get { journal.keys }
        set { journal.keys = newValue }
    }

    /// `journal`: where the plan is recorded before anything is deleted (drctl's prefix beside
    /// the destination, usually in the same store).
    public init(storage: any StorageWriter, layout: BarmanLayout, server: String, journal: PruneJournal, window: RecoveryWindow, minimumRedundancy: Int,
                tiers: RetentionTiers = .none) {
        self.storage = storage
        self.layout = layout
        self.server = server
        self.journal = journal
        self.window = window
        self.minimumRedundancy = minimumRedundancy
        self.tiers = tiers
    }

    /// Everything a prune decided before deleting anything.
    public struct Prepared {
        public var scan: BarmanServerScan
        public var plan: PrunePlan
        public var interrupted: [InterruptedPrune]
        var unfinished: [(stamp: String, plan: PrunePlan)]
        /// Object Lock on, or unknown (no right to read the configuration): each object is looked at before it is deleted.
        var checkLocks: Bool
        var heads: [String: StoredObject?]?
        var now: Date
    }

    public struct Applied {
        /// The new record (nil when nothing was to be deleted).
        public var record: String?
        public var outcome: PruneOutcome?
    }

    public func prepare(now: Date) throws -> Prepared {
        let lock = try? storage.bucketLock()
        let checkLocks = lock?.enabled ?? true
        let (unfinished, forgedJournal) = try journal.unfinished()
        let scan = try BarmanScanner.scan(storage, layout: layout, server: server)
        let listed = try storage.listAll(prefix: layout.serverPrefix(server))
        let objects = listed.map { ObjectRef(key: $0.key, size: $0.size) }
        // Proof: what authentic drills restored, still the same objects now.
        var proven: Set<String>?
        var broken: [String: String] = [:]
        var forged = forgedJournal
        if keys.cannotSign != nil {
            proven = []   // no key: no proof can be read nor a journal sealed, so nothing is deleted
        } else if !trustUnproven {
            let (drills, unauthenticated) = try DrillEvidence.everyWorkload(journal.storage, drctlPrefix: journal.layout.root, keys: keys)
            forged += unauthenticated
            let storage = self.storage
            let verdict = try ProofCheck.judge(drills: drills, server: server, layout: layout,
                                               objects: Dictionary(listed.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })) { key in
                let sha = SHA256Stream()
                try storage.get(key, range: nil) { sha.update($0) }
                return sha.finish()
            }
            proven = verdict.proven
            broken = verdict.broken
        }
        var plan = BarmanRetention.plan(scan: scan, objects: objects, layout: layout, window: window, minimumRedundancy: minimumRedundancy, now: now,
                                        tiers: tiers, proven: proven)
        var heads: [String: StoredObject?]?
        if checkLocks && !plan.keysToDelete.isEmpty {
            let found = try Self.heads(plan.keysToDelete, storage: storage)
            heads = found
            let locked = plan.keysToDelete.compactMap { key -> LockedObject? in
                guard let lock = found[key]??.lock, lock.isLocked(at: now) else { return nil }
                return LockedObject(key: key, mode: lock.mode, retainUntil: lock.retainUntil, legalHold: lock.legalHold)
            }
            if !locked.isEmpty {
                plan = BarmanRetention.plan(scan: scan, objects: objects, layout: layout, window: window, minimumRedundancy: minimumRedundancy,
                                            now: now, locked: Set(locked.map(\.key)), tiers: tiers, proven: proven)
                plan.locked = locked
            }
        }
        if let why = keys.cannotSign {
            plan.kept = (plan.kept ?? []) + ["everything: \(why); without it drctl reads and restores but deletes nothing"]
        }
        plan.bucket = storage.bucketName
        plan.root = layout.root
        plan.proven = proven.map { $0.sorted() }
        plan.proofBroken = broken.isEmpty ? nil : broken
        plan.unauthenticated = forged.isEmpty ? nil : forged.sorted()
        // An interrupted prune is finished only as far as today's plan agrees with it: its
        // keys that this plan deletes anyway go with this run, the others stay.
        let interrupted = try unfinished.map { record in
            try PruneReplay.check(record: journal.planLocation(record.stamp), recorded: record.plan, current: plan,
                                  layout: layout, server: server, bucket: storage.bucketName)
        }
        return Prepared(scan: scan, plan: plan, interrupted: interrupted, unfinished: unfinished, checkLocks: checkLocks, heads: heads, now: now)
    }

    /// Records the plan, deletes, records the outcome, and closes the interrupted records this
    /// run did the work of. A failed deletion leaves its record open (the next run finishes it).
    public func apply(_ p: Prepared) throws -> Applied {
        var applied = Applied()
        if let why = keys.cannotSign { throw LocalError("not deleting: \(why)") }
        if !p.plan.keysToDelete.isEmpty {
            // Record first: a deletion is never unaccounted for, and an interrupted one is finished by the next run.
            let name = PruneJournal.stamp(p.now)
            try journal.record(p.plan, stamp: name)
            let outcome = try delete(p.plan.keysToDelete, checkLocks: p.checkLocks, now: p.now, heads: p.heads)
            try journal.finish(name, outcome)
            applied = Applied(record: name, outcome: outcome)
            guard outcome.failed.isEmpty else { return applied }
        }
        for (record, i) in zip(p.unfinished, p.interrupted) {
            try journal.finish(record.stamp, PruneOutcome(deleted: i.stillSelected.count, supersededBy: applied.record,
                                                          keptNoLongerSelected: i.noLongerSelected.count, refused: i.refused.count))
        }
        return applied
    }

    /// HEAD of each key (nil: gone), 16 at a time: its version and its lock.
    static func heads(_ keys: [String], storage: any StorageReader) throws -> [String: StoredObject?] {
        let found = try Parallel.map(keys, threads: 16) { try storage.head($0) }
        return Dictionary(zip(keys, found), uniquingKeysWith: { a, _ in a })
    }

    /// Deletes `keys`. On a store with Object Lock (and so versions) the exact current version
    /// goes, so the space is freed instead of hidden behind a delete marker; a version still
    /// locked is left and counted, not reported key by key as an error.
    func delete(_ keys: [String], checkLocks: Bool, now: Date, heads known: [String: StoredObject?]?) throws -> PruneOutcome {
        var outcome = PruneOutcome()
        var versions = keys.map { StoredVersion(key: $0) }
        if checkLocks {
            var heads = known ?? [:]
            let unknown = keys.filter { !heads.keys.contains($0) }
            heads.merge(try Self.heads(unknown, storage: storage)) { a, _ in a }
            versions = []
            for key in keys {
                guard let head = heads[key] ?? nil else { outcome.deleted += 1; continue }   // gone already (an earlier, interrupted run)
                if let lock = head.lock, lock.isLocked(at: now) {
                    outcome.locked.append(LockedObject(key: key, mode: lock.mode, retainUntil: lock.retainUntil, legalHold: lock.legalHold))
                } else {
                    versions.append(StoredVersion(key: key, versionID: head.versionID))
                }
            }
        }
        let failures = try storage.delete(versions: versions)
        for f in failures {
            if checkLocks && f.code == "AccessDenied" {
                outcome.locked.append(LockedObject(key: f.key, mode: nil, retainUntil: nil, legalHold: false))
            } else {
                outcome.failed.append(f.description)
            }
        }
        outcome.deleted += versions.count - failures.count
        return outcome
    }
}

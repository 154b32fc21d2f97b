import Foundation
import Support
import Layout

/// A barman recovery window: `RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS` (a month is 31 days, as in barman).
public struct RecoveryWindow: Sendable, Equatable, CustomStringConvertible {
    public enum Unit: String, Sendable { case days = "d", weeks = "w", months = "m" }
    public var value: Int
    public var unit: Unit

    public init(value: Int, unit: Unit) {
        self.value = value
        self.unit = unit
    }

    /// CNPG's `retentionPolicy` form: `7d`, `4w`, `3m` (TimeSpan's cnpg dialect).
    public init?(cnpg: String) {
        guard let span = TimeSpan(dialect: .cnpg, cnpg), let u = Unit(rawValue: span.unit) else { return nil }
        self.init(value: span.amount, unit: u)
    }

    public var seconds: TimeInterval { Double(value * TimeSpan.unitSeconds(unit.rawValue, dialect: .cnpg)!) }

    public var description: String { "RECOVERY WINDOW OF \(value) \(["d": "DAYS", "w": "WEEKS", "m": "MONTHS"][unit.rawValue]!)" }
}

/// What retention would delete from one barman-cloud server, and why.
public struct PrunePlan: Sendable, Codable, Equatable {
    public var server: String
    public var policy: String
    public var pointOfRecoverability: Date
    /// Per backup id: VALID, POTENTIALLY_OBSOLETE (kept for minimum redundancy), OBSOLETE, or NONE (not DONE: never touched).
    public var report: [String: String]
    public var backupsToDelete: [String]
    /// Every object key the plan deletes: the backups' files and the WAL they alone needed.
    public var keysToDelete: [String]
    public var bytes: Int64
    /// Objects retention selected that the bucket's Object Lock keeps: left for a later prune.
    public var locked: [LockedObject]? = nil
    /// Why the plan keeps what barman's rules alone would delete (the last way back).
    public var kept: [String]? = nil
    /// Where the plan was made for (set when it is recorded): a recorded plan is only ever
    /// finished against the same bucket and barman destination.
    public var bucket: String? = nil
    public var root: String? = nil
    /// In a report only: what interrupted prunes of this server may still delete.
    public var interrupted: [InterruptedPrune]? = nil
    /// Backups drills restored that are still the objects they read (nil: proof not asked for, --trust-unproven).
    public var proven: [String]? = nil
    /// Backups a drill restored whose objects changed since, with why.
    public var proofBroken: [String: String]? = nil
    /// drctl records under the journal's prefix that do not verify (ignored for every decision).
    public var unauthenticated: [String]? = nil
}

/// A recorded prune plan that has no outcome, checked against the plan made now.
public struct InterruptedPrune: Sendable, Codable, Equatable {
    public var record: String
    /// Its keys that the current plan also deletes: the only ones that go.
    public var stillSelected: [String]
    /// Its keys the current retention keeps (a mistaken window, a newer backup, a lock): they stay.
    public var noLongerSelected: [String]
    /// Its keys that are not barman objects of this server (a doctored record): never deleted.
    public var refused: [String]
}

public struct PruneRecordMismatch: Error, CustomStringConvertible, Sendable {
    public var description: String
}

public enum PruneReplay {
    /// What the interrupted plan `recorded` may still delete now: only keys that `current` (made
    /// from the bucket as it is, with today's retention) deletes too, under the server's own
    /// prefix, of the kinds barman's deletion removes. A record is input from the bucket like any
    /// other: it never widens a deletion. A record made for another server, bucket or barman
    /// destination is refused.
    public static func check(record: String, recorded: PrunePlan, current: PrunePlan, layout: BarmanLayout, server: String,
                             bucket: String) throws -> InterruptedPrune {
        var disagree: [String] = []
        if recorded.server != server { disagree.append("server '\(recorded.server)', not '\(server)'") }
        if let b = recorded.bucket, b != bucket { disagree.append("bucket '\(b)', not '\(bucket)'") }
        if let r = recorded.root, r != layout.root { disagree.append("destination prefix '\(r)', not '\(layout.root)'") }
        guard disagree.isEmpty else {
            throw PruneRecordMismatch(description: "the unfinished prune record \(record) was made for \(disagree.joined(separator: ", ")): refused (nothing deleted); remove the record if it is not yours")
        }
        let selected = Set(current.keysToDelete)
        let prefix = layout.serverPrefix(server)
        var out = InterruptedPrune(record: record, stillSelected: [], noLongerSelected: [], refused: [])
        for key in recorded.keysToDelete {
            let barmanKind: Bool
            switch layout.parse(key) {
            case .backupInfo(let s, _)?, .backupArchive(let s, _, _, _)?, .walSegment(let s, _, _)?, .partialSegment(let s, _, _)?,
                 .backupHistory(let s, _, _, _)?:
                barmanKind = s == server
            default:
                barmanKind = false
            }
            if !key.hasPrefix(prefix) || !barmanKind {
                out.refused.append(key)
            } else if selected.contains(key) {
                out.stillSelected.append(key)
            } else {
                out.noLongerSelected.append(key)
            }
        }
        return out
    }
}

/// An object prune leaves because the store would refuse to delete it until then.
public struct LockedObject: Sendable, Codable, Equatable {
    public var key: String
    public var mode: String?
    public var retainUntil: Date?
    public var legalHold: Bool
    public init(key: String, mode: String?, retainUntil: Date?, legalHold: Bool) {
        self.key = key
        self.mode = mode
        self.retainUntil = retainUntil
        self.legalHold = legalHold
    }
}

public enum BarmanRetention {
    struct Backup {
        var id: String
        var status: String
        var endTime: Date?
        var beginWAL: String?
        var timeline: UInt32?
        var done: Bool { status == "DONE" || status == "WAITING_FOR_WALS" }
    }

    /// Why a backup.info cannot be what barman wrote, if it cannot: barman names a backup by its
    /// start (in the local time of the host it ran on: within a day of begin_time), and a backup
    /// ends after it begins. Such a backup (damaged, or written by someone who can write to the
    /// bucket to make the real ones look old) is never counted, ranked or deleted.
    static func suspect(_ b: BarmanBackup) -> String? {
        if let begin = b.beginTime, let end = b.endTime, end < begin { return "it ends before it begins" }
        if let begin = b.beginTime, let named = backupIDTime(b.backupID), abs(named.timeIntervalSince(begin)) > 26 * 3600 {
            return "its id is not its begin time"
        }
        return nil
    }

    /// A barman backup id (`YYYYMMDDTHHMMSS`) as a time, read as UTC.
    static func backupIDTime(_ id: String) -> Date? {
        let b = Array(id.utf8)
        guard b.count == 15, b[8] == UInt8(ascii: "T") else { return nil }
        let iso = "\(id.prefix(4))-\(id.dropFirst(4).prefix(2))-\(id.dropFirst(6).prefix(2))T\(id.dropFirst(9).prefix(2)):\(id.dropFirst(11).prefix(2)):\(id.dropFirst(13).prefix(2))Z"
        return RFC3339.parse(iso)
    }

    /// barman's recovery-window report: newest first, every DONE backup is VALID until, and
    /// including, the first one that ended before the point of recoverability; older DONE
    /// backups are OBSOLETE unless minimum redundancy keeps them. The newest DONE backup is
    /// therefore always kept.
    ///
    /// With `tiers`, an OBSOLETE or POTENTIALLY_OBSOLETE backup a tier selects is kept instead
    /// (`KEPT_DAILY`, `KEPT_WEEKLY_MONTHLY`, …). Only restorable backups (DONE, data present,
    /// their own WAL in the archive) fill a tier: a tier that kept one that cannot be restored
    /// would be a promise drctl cannot keep.
    ///
    /// With `proven` (the backups drills restored, as they are now), only a proven backup holds
    /// a tier's slot: a candidate that is not proven (a real backup no drill restored yet, or a
    /// backup.info anyone with the bucket's keys wrote) is kept (`KEPT_UNPROVEN`) but takes no
    /// slot, so a forgery can never push the period's real backup out. nil: every candidate is
    /// trusted (`--trust-unproven`).
    public static func report(_ backups: [BarmanBackup], window: RecoveryWindow, minimumRedundancy: Int, now: Date,
                              tiers: RetentionTiers = .none, proven: Set<String>? = nil) -> [String: String] {
        var report = windowReport(backups, window: window, minimumRedundancy: minimumRedundancy, now: now, proven: proven)
        guard !tiers.isEmpty else { return report }
        // Consistent by its own WAL, by name (a forged timeline history cannot unseat a pick),
        // and not ending in the future (a forged backup.info cannot take every slot ahead).
        let candidates = backups.filter { $0.status == "DONE" && ($0.selfContained ?? $0.restorable) && suspect($0) == nil }
            .compactMap { b in b.endTime.flatMap { $0 <= now.addingTimeInterval(3600) ? (id: b.backupID, at: $0) : nil } }
        let trusted = proven.map { p in candidates.filter { p.contains($0.id) } } ?? candidates
        let picked = tiers.select(trusted)
        // Only what the window would delete: minimum redundancy keeps its backups whole.
        for (id, chosen) in picked where report[id] == "OBSOLETE" {
            report[id] = "KEPT_" + chosen.map { $0.rawValue.uppercased() }.joined(separator: "_")
        }
        if let proven {
            // An unproven candidate (a real backup no drill restored, or a forgery) takes no slot,
            // but is kept when its period, counted by the calendar from now (so forgeries in newer
            // periods cannot push it out), has no proven backup: the real one of a period is never
            // lost to a forgery beside it. Kept as a tier's point (its own WAL only).
            for t in RetentionTiers.Tier.allCases where tiers.count(t) > 0 {
                let recent = RetentionTiers.recentPeriods(t, count: tiers.count(t), now: now)
                let held = Set(trusted.filter { picked[$0.id]?.contains(t) == true }.map { RetentionTiers.period(t, of: $0.at) })
                for c in candidates where !proven.contains(c.id) && report[c.id] == "OBSOLETE" {
                    let p = RetentionTiers.period(t, of: c.at)
                    if recent.contains(p) && !held.contains(p) { report[c.id] = "KEPT_UNPROVEN_" + t.rawValue.uppercased() }
                }
            }
        }
        return report
    }

    /// Whether a report status is one a tier gave.
    public static func isTierKept(_ status: String?) -> Bool {
        guard let s = status, s.hasPrefix("KEPT_") else { return false }
        var rest = s.dropFirst(5)
        if rest.hasPrefix("UNPROVEN_") { rest = rest.dropFirst(9) }   // an unproven candidate kept as its period's point
        return !rest.isEmpty && rest.split(separator: "_").allSatisfy { RetentionTiers.Tier(rawValue: $0.lowercased()) != nil }
    }

    /// With `proven`, the backup that holds the window's start must be a proven one: a
    /// backup.info anyone could have written cannot stand in for it (and so get the real one
    /// before it deleted); unproven ones on the way stay VALID.
    static func windowReport(_ backups: [BarmanBackup], window: RecoveryWindow, minimumRedundancy: Int, now: Date,
                             proven: Set<String>? = nil) -> [String: String] {
        let point = now.addingTimeInterval(-window.seconds)
        var report: [String: String] = [:]
        var found = false
        var valid = 0
        for b in backups.sorted(by: { $0.backupID > $1.backupID }) {
            guard b.status == "DONE" else { report[b.backupID] = "NONE"; continue }
            if let why = suspect(b) { report[b.backupID] = "SUSPECT: \(why)"; continue }
            if found {
                if valid < minimumRedundancy {
                    report[b.backupID] = "POTENTIALLY_OBSOLETE"
                    valid += 1
                } else {
                    report[b.backupID] = "OBSOLETE"
                }
            } else {
                report[b.backupID] = "VALID"
                valid += 1
                if let end = b.endTime, end < point, proven?.contains(b.backupID) ?? true { found = true }
            }
        }
        return report
    }

    /// The full plan: OBSOLETE backups are deleted oldest first; each, when no older completed
    /// backup remains, takes with it the WAL named before the next completed backup's
    /// begin_wal, except history files and WAL of timelines that remaining backups are on
    /// (other than that next backup's).
    ///
    /// Objects in `locked` (under Object Lock) stay: a backup with any locked object is kept
    /// whole (OBSOLETE_LOCKED), with the WAL it needs, since deleting part of a backup would leave
    /// one that looks restorable and is not; a locked WAL segment just stays.
    ///
    /// With `tiers`, WAL follows drctl's rule instead of barman's (which has no tiers): every WAL
    /// object before the oldest begin_wal of a backup the window keeps goes, except the
    /// begin_wal...end_wal of each tier-kept backup, which is what makes it consistent. A tier
    /// backup is then a restore point, no longer the start of a point-in-time range.
    ///
    /// With `proven` (what drills restored, checked against the objects as they are now: see
    /// ProofCheck), deletion rests on proof, not on what backup.info files say: the newest proven
    /// backup and every backup newer than it (with the WAL they need) are never deleted, tier
    /// slots go to proven backups only, and with no proven backup nothing is deleted. nil trusts
    /// the metadata as barman does (`--trust-unproven`), still keeping the newest restorable.
    public static func plan(scan: BarmanServerScan, objects: [ObjectRef], layout: BarmanLayout, window: RecoveryWindow,
                            minimumRedundancy: Int, now: Date, locked: Set<String> = [], tiers: RetentionTiers = .none,
                            proven: Set<String>? = nil) -> PrunePlan {
        // WAL objects by barman's WAL name (the key's file name without its compression suffix).
        var wals: [(name: String, key: String)] = []
        var baseObjects: [String: [String]] = [:]
        for o in objects {
            switch layout.parse(o.key) {
            case .backupInfo(_, let id)?, .backupArchive(_, let id, _, _)?: baseObjects[id, default: []].append(o.key)
            case .walSegment(_, let s, _)?: wals.append((s.name, o.key))
            case .partialSegment(_, let s, _)?: wals.append((s.name + ".partial", o.key))
            case .backupHistory(_, let s, let off, _)?: wals.append((s.name + "." + String(format: "%08X", off) + ".backup", o.key))
            default: break
            }
        }
        var report = report(scan.backups, window: window, minimumRedundancy: minimumRedundancy, now: now, tiers: tiers, proven: proven)
        for (id, keys) in baseObjects where report[id] == "OBSOLETE" && keys.contains(where: locked.contains) { report[id] = "OBSOLETE_LOCKED" }
        // Stricter than barman: the newest backup that can really be restored (DONE, its data
        // present, its WAL continuous to its end) is never deleted, whatever the window ranks
        // above it; with none restorable, nothing is deleted at all.
        var kept: [String] = []
        if let newest = scan.backups.filter(\.restorable).max(by: { $0.backupID < $1.backupID }) {
            if report[newest.backupID]?.hasPrefix("OBSOLETE") == true {
                report[newest.backupID] = "KEPT_RESTORABLE"
                kept.append("\(newest.backupID): the newest restorable backup (DONE, data present, WAL continuous to its end); the newer ones are not restorable, so the window alone would delete the last way back")
            } else if isTierKept(report[newest.backupID]) {
                // A tier keeps only a backup's own WAL: the newest way back keeps all WAL after it too.
                report[newest.backupID] = "KEPT_RESTORABLE"
                kept.append("\(newest.backupID): the newest restorable backup, kept with all the WAL after it (not as a tier's point only); the newer ones are not restorable")
            }
        } else {
            let doomed = report.filter { $0.value == "OBSOLETE" }.map(\.key).sorted()
            for id in doomed { report[id] = "KEPT_NONE_RESTORABLE" }
            if !doomed.isEmpty {
                kept.append("\(doomed.joined(separator: ", ")): no backup of \(scan.server) is restorable (DONE with its data and WAL), so nothing is deleted until one is")
            }
        }
        if let proven { keepProven(scan: scan, proven: proven, report: &report, kept: &kept) }
        let toDelete = report.filter { $0.value == "OBSOLETE" }.map(\.key).sorted()
        var available: [String: Backup] = [:]
        for b in scan.backups {
            available[b.backupID] = Backup(id: b.backupID, status: b.status, endTime: b.endTime, beginWAL: b.beginWAL, timeline: b.timeline)
        }
        // No WAL from the earliest begin_wal of a backup that stays (DONE or suspect) on: a kept
        // backup keeps all the WAL it needs, whatever another backup.info claims as its begin.
        let staying = scan.backups.filter { !toDelete.contains($0.backupID) && ($0.status == "DONE" || report[$0.backupID]?.hasPrefix("SUSPECT") == true) }
        let walFloor = staying.compactMap(\.beginWAL).min()
        var keys: [String] = []
        let sizes = Dictionary(objects.map { ($0.key, $0.size) }, uniquingKeysWith: { a, _ in a })
        var policy = window.description
        if !tiers.isEmpty {
            policy += " + \(tiers)"
            keys = tieredKeys(scan: scan, report: report, toDelete: toDelete, baseObjects: baseObjects, wals: wals, layout: layout, locked: locked)
            return PrunePlan(server: scan.server, policy: policy, pointOfRecoverability: now.addingTimeInterval(-window.seconds),
                             report: report, backupsToDelete: toDelete, keysToDelete: keys, bytes: keys.reduce(0) { $0 + (sizes[$1] ?? 0) },
                             kept: kept.isEmpty ? nil : kept)
        }
        var deletedWAL = Set<String>()
        for id in toDelete {
            guard let b = available[id] else { continue }
            // backup.info goes last (after the backup's WAL): a prune stopped half way leaves a
            // backup the next plan still sees and finishes, never orphans it does not know.
            let info = layout.backupInfoKey(server: scan.server, backupID: id)
            let base = baseObjects[id] ?? []
            keys += base.filter { $0 != info }.sorted()
            let ids = available.keys.sorted()
            let i = ids.firstIndex(of: id)!
            let previous = ids[..<i].reversed().first { available[$0]!.done }
            if previous == nil {
                let next = ids[(i + 1)...].first { available[$0]!.done }.map { available[$0]! }
                let until = next ?? b
                // barman means to skip the deleted backup here, but compares a freshly loaded copy
                // by identity, so its timeline stays protected too. Kept: it only keeps more WAL,
                // and prune must decide exactly as barman-cloud-backup-delete does.
                var protect = Set(available.values.compactMap(\.timeline))
                if let t = until.timeline { protect.remove(t) }
                if let begin = until.beginWAL {
                    for w in wals where !deletedWAL.contains(w.key) && !locked.contains(w.key) {
                        guard let tli = UInt32(w.name.prefix(8), radix: 16), !protect.contains(tli) else { continue }
                        if w.name < begin && walFloor.map({ w.name < $0 }) ?? true {
                            keys.append(w.key)
                            deletedWAL.insert(w.key)
                        }
                    }
                }
            }
            if base.contains(info) { keys.append(info) }
            available.removeValue(forKey: id)
        }
        return PrunePlan(server: scan.server, policy: policy, pointOfRecoverability: now.addingTimeInterval(-window.seconds),
                         report: report, backupsToDelete: toDelete, keysToDelete: keys, bytes: keys.reduce(0) { $0 + (sizes[$1] ?? 0) },
                         kept: kept.isEmpty ? nil : kept)
    }
}

extension BarmanRetention {
    /// The proof rule: the newest proven backup and everything newer stay whole (a tier's mark on
    /// them gives way, so all the WAL after the proven one stays too).
    static func keepProven(scan: BarmanServerScan, proven: Set<String>, report: inout [String: String], kept: inout [String]) {
        func deletable(_ id: String) -> Bool {
            report[id].map { $0.hasPrefix("OBSOLETE") || isTierKept($0) } ?? false
        }
        // None proven: the window found no start (only a proven backup holds it), so nothing is OBSOLETE.
        guard let newest = scan.backups.map(\.backupID).filter(proven.contains).max() else { return }
        var held: [String] = []
        for b in scan.backups where b.backupID >= newest && deletable(b.backupID) {
            report[b.backupID] = b.backupID == newest ? "KEPT_PROVEN" : "KEPT_UNPROVEN"
            held.append(b.backupID)
        }
        if !held.isEmpty {
            kept.append("\(held.sorted().joined(separator: ", ")): \(newest) is the newest backup a drill restored (as it is now); it and every newer backup stay with the WAL they need, whatever their backup.info says")
        }
    }

    /// The keys a tiered plan deletes: the deleted backups' archives, then the WAL no kept backup
    /// needs, then the deleted backups' backup.info (last, so an interrupted prune is seen again).
    static func tieredKeys(scan: BarmanServerScan, report: [String: String], toDelete: [String], baseObjects: [String: [String]],
                           wals: [(name: String, key: String)], layout: BarmanLayout, locked: Set<String>) -> [String] {
        let doomed = Set(toDelete)
        // Everything from the oldest begin_wal of a backup kept for the window (or kept for any
        // reason other than a tier, suspect ones included) stays: that is the PITR range.
        let window = scan.backups.filter { b in
            !doomed.contains(b.backupID) && !isTierKept(report[b.backupID]) && (b.status == "DONE" || report[b.backupID]?.hasPrefix("SUSPECT") == true)
        }
        // No backup keeps a PITR range: delete no WAL (only archives), rather than guess.
        // No backup restorable: nothing at all is deleted, as without tiers.
        guard scan.backups.contains(where: \.restorable) else { return [] }
        // No backup keeps a PITR range: delete no WAL (only archives, each backup.info last), rather than guess.
        guard let floor = window.compactMap(\.beginWAL).min() else {
            let info = { (id: String) in layout.backupInfoKey(server: scan.server, backupID: id) }
            return toDelete.flatMap { id in (baseObjects[id] ?? []).filter { $0 != info(id) }.sorted() }
                + toDelete.map(info).filter { k in baseObjects.values.contains { $0.contains(k) } }
        }
        let ranges = scan.backups.filter { isTierKept(report[$0.backupID]) }.compactMap { b -> ClosedRange<String>? in
            guard let begin = b.beginWAL, let end = b.endWAL, begin <= end else { return nil }
            return begin...end
        }
        var keys: [String] = []
        var infos: [String] = []
        for id in toDelete {
            let info = layout.backupInfoKey(server: scan.server, backupID: id)
            let base = baseObjects[id] ?? []
            keys += base.filter { $0 != info }.sorted()
            if base.contains(info) { infos.append(info) }
        }
        for w in wals.sorted(by: { $0.name < $1.name }) where !locked.contains(w.key) {
            // The segment a .partial or .backup file belongs to decides: its first 24 characters.
            let segment = String(w.name.prefix(24))
            guard segment.count == 24, segment < floor, !ranges.contains(where: { $0.contains(segment) }) else { continue }
            keys.append(w.key)
        }
        return keys + infos
    }
}

/// An object as listed: enough for planning deletions.
public struct ObjectRef: Sendable, Equatable {
    public var key: String
    public var size: Int64
    public init(key: String, size: Int64) {
        self.key = key
        self.size = size
    }
}

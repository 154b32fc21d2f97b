import ArgumentParser
import Catalog
import Foundation
import Layout
import Storage
import Support
import Policy

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Show what retention would delete from a barman-cloud archive, and why; delete only with --apply.",
        discussion: """
            Recovery-window semantics are barman's (barman-cloud-backup-delete --retention-policy \
            "RECOVERY WINDOW OF …"): a backup older than the window is kept when it is needed to recover \
            to the window's start, the newest completed backup is always kept, backups that are not DONE \
            are never touched, and WAL goes only with the oldest backups, up to the next backup's begin_wal. \
            Stricter than barman: the newest restorable backup (DONE, its data present, its WAL \
            continuous to its end) and the WAL it needs are never deleted, whatever the window, and \
            nothing is deleted while no backup is restorable. Deletion rests on proof, not on what \
            backup.info files claim: the newest backup a drill restored (its evidence sealed with \
            drctl's record key, its objects still the bytes the drill read) and every newer backup \
            stay with their WAL, tier slots go to proven backups only, and with no proven backup \
            nothing is deleted (run drctl verify first, or --trust-unproven). Without a record key \
            (DRCTL_RECORD_KEY_FILE, drctl keys create) nothing is deleted. With --apply the plan is first written \
            as evidence under drctl's prefix in the bucket, then deleted in batches (each backup's \
            backup.info last). A plan recorded by an interrupted --apply is finished only as far as \
            the current plan agrees with it; the dry run lists what it would still delete.

            Long-term tiers (--keep-daily/--keep-weekly/--keep-monthly, or the policy's retention: {window, daily, weekly, monthly}) keep, beyond the window, the newest restorable backup of each of the last N days, ISO weeks and months (UTC) that have one, each with only the WAL from its begin_wal to its end_wal: a restore point, no longer the start of a point-in-time range. All other WAL before the window's oldest backup goes. With tiers, drctl render leaves CNPG's retentionPolicy out (CNPG would delete the tiers), so run drctl prune WORKLOAD --apply on a schedule.

            drctl prune WORKLOAD reads the policy: each of its databases on the workload's store, or with --store NAME on a copy, with the copy's own spec.copies[].retention when it has one.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var s3: S3Options
    @Argument(help: "Workload (policy name): prune each of its databases by the policy's retention.") var workload: String?
    @Flag(help: "Every workload's databases that drctl prunes: those with long-term tiers (CNPG prunes the others), or with --store every database copied there.")
    var all = false
    @Option(help: ArgumentHelp("Policy files or directories.", valueName: "path")) var policies: [String] = ["policies"]
    @OptionGroup var choice: StoreChoice
    @Option(help: ArgumentHelp("barman-cloud destination (CNPG destinationPath), or a copy of the bucket on disk (file:///path).", valueName: "s3://bucket/path")) var source: String?
    @Option(help: "barman-cloud server name (CNPG serverName).") var server: String?
    @Option(help: "Recovery window in CNPG's form: 7d, 4w, 3m (m = 31 days, as in barman).") var retention: String?
    @Option(help: ArgumentHelp("Velero storage location: report the backups whose status.expiration has passed (Velero's garbage collector deletes them, with their snapshots; drctl does not).", valueName: "s3://bucket/prefix"))
    var velero: String?
    @Option(help: "Keep at least this many completed backups.") var minimumRedundancy = 0
    @Option(help: "Beyond the window, keep the newest restorable backup of each of the last N days that have one.") var keepDaily = 0
    @Option(help: "… of each of the last N ISO weeks.") var keepWeekly = 0
    @Option(help: "… of each of the last N calendar months.") var keepMonthly = 0
    @Option(help: ArgumentHelp("Where to record deletions (default: drctl/ beside the destination in the same bucket).", valueName: "s3://bucket/prefix"))
    var evidence: String?
    @Flag(help: "Delete. Without it, nothing is deleted.") var apply = false
    @Flag(help: "Delete on barman's metadata alone, without a drill's proof (for archives no drill restores). The newest restorable backup is still never deleted; anyone who can write to the bucket can then steer what goes.")
    var trustUnproven = false
    @Option(name: [.short, .long], help: "Output format: table or json.") var output: OutputFormat = .table

    var tiers: RetentionTiers { RetentionTiers(daily: keepDaily, weekly: keepWeekly, monthly: keepMonthly) }

    func validate() throws {
        guard [keepDaily, keepWeekly, keepMonthly].allSatisfy({ $0 >= 0 }) else { throw ValidationError("--keep-daily, --keep-weekly and --keep-monthly must not be negative") }
        guard minimumRedundancy >= 0 else { throw ValidationError("--minimum-redundancy must not be negative") }
        if workload != nil && all { throw ValidationError("give a WORKLOAD or --all, not both") }
        if workload != nil || all {
            guard source == nil && server == nil && retention == nil && velero == nil else {
                throw ValidationError("a WORKLOAD takes its stores and retention from the policy: leave out --source, --server, --retention and --velero")
            }
            guard tiers.isEmpty else { throw ValidationError("a WORKLOAD's tiers are its policy's (spec.cnpg[].retention): leave out --keep-*") }
            return
        }
        if choice.store != nil { throw ValidationError("--store reads the workloads' copy: name a WORKLOAD or --all") }
        if velero != nil {
            guard source == nil && server == nil && retention == nil else { throw ValidationError("--velero goes alone: prune one store layout at a time") }
            return
        }
        guard source != nil, server != nil, let retention else { throw ValidationError("give a WORKLOAD, or --source, --server and --retention (barman-cloud), or --velero") }
        guard RecoveryWindow(cnpg: retention) != nil else { throw ValidationError("--retention '\(retention)' is not like 7d, 4w or 3m") }
    }

    struct VeleroExpiry: Encodable {
        var name: String
        var schedule: String?
        var phase: String
        var expiration: Date?
        var expired: Bool
    }

    /// Velero's side: what has expired. Velero deletes those itself, snapshots included.
    func reportVelero(_ location: String) throws {
        let (access, key) = try s3.open(location)
        let now = Date()
        let entries = try VeleroScanner.scan(access.storage, layout: VeleroLayout(root: key)).map {
            VeleroExpiry(name: $0.name, schedule: $0.schedule, phase: $0.phase, expiration: $0.expiration,
                         expired: $0.expiration.map { $0 < now } ?? false)
        }
        switch output {
        case .json:
            try printJSON(entries)
        case .table:
            var rows = [["NAME", "SCHEDULE", "PHASE", "EXPIRES (UTC)", "RETENTION"]]
            for v in entries {
                rows.append([v.name, v.schedule ?? "-", v.phase, v.expiration.map(formatTimestamp) ?? "-", v.expired ? "EXPIRED" : "kept"])
            }
            printTable(rows)
            let expired = entries.filter(\.expired).count
            print("\(expired) Velero backups have expired. Velero's garbage collector deletes them with their volume snapshots; to remove one now: velero backup delete NAME. drctl does not delete Velero objects from the bucket\(apply ? " (--apply changes nothing here)" : "").")
        }
    }

    func run() throws {
        global.bootstrapLogging()
        try runReportingErrors {
            if let velero { return try reportVelero(velero) }
            if workload != nil || all { return try prunePolicies() }
            guard let source, let server, let retention else { return }
            let (access, key) = try s3.open(source)
            // The journal: --evidence, else drctl/ beside the destination.
            let journal = try evidence.map { e in
                let (store, key) = try s3.open(e)
                return PruneJournal(storage: store.storage, layout: DrctlLayout(root: key), server: server)
            } ?? PruneJournal(storage: access.storage, layout: DrctlLayout.beside(key), server: server)
            let layout = BarmanLayout(root: key)
            var engine = BarmanPrune(storage: access.storage, layout: layout, server: server, journal: journal,
                                     window: RecoveryWindow(cnpg: retention)!, minimumRedundancy: minimumRedundancy, tiers: tiers)
            engine.trustUnproven = trustUnproven
            try prune(engine)
        }
    }

    /// Each database of a workload, on its store (or `--store`'s copy), by the policy's retention
    /// (or the copy's own); the journal in that store's drctl prefix.
    func prunePolicies() throws {
        let policySet = try loadCheckedPolicies(policies)
        let (set, open) = try choice.resolve(policySet, s3, copy: nil)
        var chosen: [(BackupPolicy, ObjectStorePolicy, [BackupPolicy.CNPGCluster])] = []
        if let name = workload {
            guard let p = set.backupPolicies.first(where: { $0.name.value == name }), let store = set.objectStore(named: p.objectStore.value) else {
                throw ValidationError("no policy named '\(name)' (have: \(set.backupPolicies.map(\.name.value).sorted().joined(separator: ", ")))")
            }
            guard !p.cnpg.isEmpty else { throw ValidationError("workload \(name) has no CNPG database: Velero's garbage collector applies its schedules' ttl (drctl prune --velero reports it)") }
            chosen = [(p, store, p.cnpg)]
        } else {
            for p in set.backupPolicies {
                guard let store = set.objectStore(named: p.objectStore.value), choice.store == nil || store.name.value == choice.store else { continue }
                // CNPG's own retentionPolicy prunes a primary without tiers; a copy only drctl prunes.
                let mine = p.cnpg.filter { choice.store != nil || !$0.tiers.isEmpty }
                if !mine.isEmpty { chosen.append((p, store, mine)) }
            }
            if chosen.isEmpty, output == .table { print("no database to prune: none has long-term tiers (CNPG's retentionPolicy prunes the others)") }
        }
        for (p, store, databases) in chosen { try prune(p, on: store, databases, open: open, policySet: policySet) }
    }

    func prune(_ p: BackupPolicy, on store: ObjectStorePolicy, _ databases: [BackupPolicy.CNPGCluster], open: StoreOpener, policySet: PolicySet) throws {
        // On a copy with its own retention, that one (the copy of this workload's own store); else the database's.
        let home = policySet.backupPolicies.first { $0.name.value == p.name.value }?.objectStore.value
        let copyRetention = choice.store == nil || home == store.name.value ? nil
            : policySet.objectStore(named: home ?? "")?.copies.first { $0.to.value == store.name.value }?.retention
        let access = try open(store)
        for c in databases {
            let window = copyRetention?.window ?? c.retention, tiers = copyRetention?.tiers ?? c.tiers
            guard let w = RecoveryWindow(cnpg: window.value.cnpgRetention) else {
                throw ConfigError("\(window.location): retention \(window.value) is not a recovery window barman can apply")
            }
            if output == .table { print("\(p.name.value)/\(c.cluster.value) on ObjectStore \(store.name.value) (\(store.barmanDestination)):") }
            let journal = PruneJournal(storage: access.storage, layout: DrctlLayout(root: store.prefixes.drctl.value), server: c.serverName.value)
            // CNPG applies minimum redundancy 1 (its retention report); a prune never keeps less.
            var engine = BarmanPrune(storage: access.storage, layout: BarmanLayout(root: store.prefixes.barman.value), server: c.serverName.value,
                                     journal: journal, window: w, minimumRedundancy: max(minimumRedundancy, 1), tiers: tiers)
            engine.trustUnproven = trustUnproven
            try prune(engine)
        }
    }

    func prune(_ prune: BarmanPrune) throws {
        do {   // one server's plan, report and (with --apply) deletion
            let server = prune.server
            let prepared = try prune.prepare(now: Date())
            let (scan, plan, interrupted) = (prepared.scan, prepared.plan, prepared.interrupted)
            switch output {
            case .json:
                var report = plan
                report.interrupted = interrupted.isEmpty ? nil : interrupted
                try printJSON(report)
            case .table:
                print("\(plan.policy) for \(server): point of recoverability \(formatTimestamp(plan.pointOfRecoverability)) UTC")
                var rows = [["BACKUP ID", "STATUS", "END TIME (UTC)", "RETENTION"]]
                for b in scan.backups.sorted(by: { $0.backupID < $1.backupID }) {
                    rows.append([b.backupID, b.status, b.endTime.map(formatTimestamp) ?? "-", plan.report[b.backupID] ?? "-"])
                }
                printTable(rows)
                if let proven = plan.proven {
                    print(proven.isEmpty ? "proven by a drill: none; only a proven backup holds the window's start, so nothing is deleted (run a drill first: drctl verify)"
                          : "proven by a drill (restored, still the same objects): \(proven.joined(separator: ", "))")
                } else {
                    print("--trust-unproven: deciding on backup.info alone, without a drill's proof")
                }
                for (id, why) in (plan.proofBroken ?? [:]).sorted(by: { $0.key < $1.key }) { print("not proven: \(id): \(why)") }
                if let forged = plan.unauthenticated {
                    print("ignored \(forged.count) unauthenticated drctl record(s) (not sealed with drctl's key): \(forged.prefix(5).joined(separator: ", "))\(forged.count > 5 ? ", …" : "")")
                }
                for k in plan.kept ?? [] { print("keeping \(k)") }
                if let locked = plan.locked, !locked.isEmpty {
                    let held = locked.filter(\.legalHold), dated = locked.filter { !$0.legalHold }
                    var why: [String] = []
                    if !dated.isEmpty {
                        why.append("\(dated.count) until \(dated.compactMap(\.retainUntil).max().map(formatTimestamp) ?? "?") UTC at the latest (a prune after that deletes them)")
                    }
                    if !held.isEmpty { why.append("\(held.count) under legal hold (kept until the hold is removed)") }
                    print("keeping \(locked.count) \(locked.count == 1 ? "object" : "objects") retention selected, under Object Lock: \(why.joined(separator: "; "))")
                }
                for i in interrupted {
                    var line = "an interrupted prune recorded in \(i.record): \(i.stillSelected.count) of its objects are still selected and \(apply ? "are deleted with this run" : "would be deleted (--apply)")"
                    if !i.noLongerSelected.isEmpty { line += "; \(i.noLongerSelected.count) no longer are and stay" }
                    if !i.refused.isEmpty { line += "; \(i.refused.count) are not barman objects of \(server) and are never deleted (e.g. \(i.refused[0]))" }
                    print(line)
                    if !apply { for k in i.stillSelected { print("  \(k)") } }
                }
                print("\(apply ? "deleting" : "would delete") \(plan.backupsToDelete.count) backups and \(plan.keysToDelete.count) objects (\(formatBytes(plan.bytes)))")
                if !apply { for k in plan.keysToDelete { print("  \(k)") } }
            }
            guard apply else { return }
            let applied = try prune.apply(prepared)
            guard let record = applied.record, let outcome = applied.outcome else { return }
            if output == .table { print("recorded in \(prune.journal.planLocation(record)); \(outcome.summary)") }
            guard outcome.failed.isEmpty else {
                for f in outcome.failed.prefix(10) { FileHandle.standardError.write(Data("drctl: not deleted: \(f)\n".utf8)) }
                if outcome.failed.count > 10 { FileHandle.standardError.write(Data("drctl: … and \(outcome.failed.count - 10) more\n".utf8)) }
                throw Exit.failure
            }
        }
    }
}

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
            nothing is deleted while no backup is restorable. With --apply the plan is first written \
            as evidence under drctl's prefix in the bucket, then deleted in batches (each backup's \
            backup.info last). A plan recorded by an interrupted --apply is finished only as far as \
            the current plan agrees with it; the dry run lists what it would still delete.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var s3: S3Options
    @Option(help: ArgumentHelp("barman-cloud destination (CNPG destinationPath), or a copy of the bucket on disk (file:///path).", valueName: "s3://bucket/path")) var source: String?
    @Option(help: "barman-cloud server name (CNPG serverName).") var server: String?
    @Option(help: "Recovery window in CNPG's form: 7d, 4w, 3m (m = 31 days, as in barman).") var retention: String?
    @Option(help: ArgumentHelp("Velero storage location: report the backups whose status.expiration has passed (Velero's garbage collector deletes them, with their snapshots; drctl does not).", valueName: "s3://bucket/prefix"))
    var velero: String?
    @Option(help: "Keep at least this many completed backups.") var minimumRedundancy = 0
    @Option(help: ArgumentHelp("Where to record deletions (default: drctl/ beside the destination in the same bucket).", valueName: "s3://bucket/prefix"))
    var evidence: String?
    @Flag(help: "Delete. Without it, nothing is deleted.") var apply = false
    @Option(name: [.short, .long], help: "Output format: table or json.") var output: OutputFormat = .table

    func validate() throws {
        if velero != nil {
            guard source == nil && server == nil && retention == nil else { throw ValidationError("--velero goes alone: prune one store layout at a time") }
            return
        }
        guard source != nil, server != nil, let retention else { throw ValidationError("give --source, --server and --retention (barman-cloud), or --velero") }
        guard RecoveryWindow(cnpg: retention) != nil else { throw ValidationError("--retention '\(retention)' is not like 7d, 4w or 3m") }
        guard minimumRedundancy >= 0 else { throw ValidationError("--minimum-redundancy must not be negative") }
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
            guard let source, let server, let retention else { return }
            let (access, key) = try s3.open(source)
            // The journal: --evidence, else drctl/ beside the destination.
            let journal = try evidence.map { e in
                let (store, key) = try s3.open(e)
                return PruneJournal(storage: store.storage, layout: DrctlLayout(root: key), server: server)
            } ?? PruneJournal(storage: access.storage, layout: DrctlLayout.beside(key), server: server)
            let layout = BarmanLayout(root: key)
            let prune = BarmanPrune(storage: access.storage, layout: layout, server: server, journal: journal,
                                    window: RecoveryWindow(cnpg: retention)!, minimumRedundancy: minimumRedundancy)
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

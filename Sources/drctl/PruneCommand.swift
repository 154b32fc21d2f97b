import ArgumentParser
import Catalog
import Foundation
import Layout
import ObjectStore
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
            With --apply the plan is first written as evidence under drctl's prefix in the bucket, then \
            deleted in batches.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var s3: S3Options
    @Option(help: ArgumentHelp("barman-cloud destination (CNPG destinationPath).", valueName: "s3://bucket/path")) var source: String?
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
        let url = try S3URL(parsing: location)
        let client = try s3.makeClient()
        let now = Date()
        let entries = try VeleroScanner.scan(S3Reader(client: client, bucket: url.bucket), layout: VeleroLayout(root: url.key)).map {
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
            let url = try S3URL(parsing: source)
            let client = try s3.makeClient()
            let reader = S3Reader(client: client, bucket: url.bucket)
            let layout = BarmanLayout(root: url.key)
            let scan = try BarmanScanner.scan(reader, layout: layout, server: server)
            var objects: [ObjectRef] = []
            try reader.list(prefix: layout.serverPrefix(server), delimiter: nil) { page, _ in objects += page.map { ObjectRef(key: $0.key, size: $0.size) } }
            let now = Date()
            let plan = BarmanRetention.plan(scan: scan, objects: objects, layout: layout, window: RecoveryWindow(cnpg: retention)!,
                                            minimumRedundancy: minimumRedundancy, now: now)
            switch output {
            case .json:
                try printJSON(plan)
            case .table:
                print("\(plan.policy) for \(server): point of recoverability \(formatTimestamp(plan.pointOfRecoverability)) UTC")
                var rows = [["BACKUP ID", "STATUS", "END TIME (UTC)", "RETENTION"]]
                for b in scan.backups.sorted(by: { $0.backupID < $1.backupID }) {
                    rows.append([b.backupID, b.status, b.endTime.map(formatTimestamp) ?? "-", plan.report[b.backupID] ?? "-"])
                }
                printTable(rows)
                print("\(apply ? "deleting" : "would delete") \(plan.backupsToDelete.count) backups and \(plan.keysToDelete.count) objects (\(formatBytes(plan.bytes)))")
                if !apply { for k in plan.keysToDelete { print("  \(k)") } }
            }
            guard apply, !plan.keysToDelete.isEmpty else { return }
            // Record first: a deletion is never unaccounted for, even if it is interrupted.
            let ev = try evidence.map { try S3URL(parsing: $0) } ?? S3URL(bucket: url.bucket, key: siblingPrefix(url.key, "drctl"))
            let stamp = ISO8601DateFormatter().string(from: now)
            let record = S3URL(bucket: ev.bucket, key: "\(ev.key.isEmpty ? "" : ev.key + "/")prune/\(server)/\(stamp).json")
            let e = JSONEncoder()
            e.dateEncodingStrategy = .iso8601
            e.outputFormatting = [.sortedKeys]
            try client.putObject(record, bytes: Array(try e.encode(plan)), contentType: "application/json")
            let failures = try client.deleteObjects(bucket: url.bucket, keys: plan.keysToDelete)
            for f in failures { FileHandle.standardError.write(Data("drctl: not deleted: \(f)\n".utf8)) }
            if output == .table { print("recorded in \(record); deleted \(plan.keysToDelete.count - failures.count) objects") }
            if !failures.isEmpty { throw Exit.failure }
        }
    }

    /// `cnpg` -> `drctl`, `backups/cnpg` -> `backups/drctl`.
    func siblingPrefix(_ path: String, _ name: String) -> String {
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        guard let slash = trimmed.lastIndex(of: "/") else { return name }
        return String(trimmed[..<slash]) + "/" + name
    }
}

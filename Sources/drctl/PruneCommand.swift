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
            Stricter than barman: the newest restorable backup (DONE, its data present, its WAL \
            continuous to its end) and the WAL it needs are never deleted, whatever the window, and \
            nothing is deleted while no backup is restorable. With --apply the plan is first written \
            as evidence under drctl's prefix in the bucket, then deleted in batches (each backup's \
            backup.info last). A plan recorded by an interrupted --apply is finished only as far as \
            the current plan agrees with it; the dry run lists what it would still delete.
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
            let ev = try evidence.map { try S3URL(parsing: $0) } ?? S3URL(bucket: url.bucket, key: siblingPrefix(url.key, "drctl"))
            let records = PruneRecords(client: client, prefix: S3URL(bucket: ev.bucket, key: "\(ev.key.isEmpty ? "" : ev.key + "/")prune/\(server)/"))
            // Object Lock on, or unknown (no right to read the configuration): look at each object before deleting it.
            let lockConfig = try? client.objectLockConfiguration(bucket: url.bucket)
            let checkLocks = lockConfig?.enabled ?? true
            let now = Date()

            let unfinished = try records.unfinished()

            let reader = S3Reader(client: client, bucket: url.bucket)
            let layout = BarmanLayout(root: url.key)
            let scan = try BarmanScanner.scan(reader, layout: layout, server: server)
            var objects: [ObjectRef] = []
            try reader.list(prefix: layout.serverPrefix(server), delimiter: nil) { page, _ in objects += page.map { ObjectRef(key: $0.key, size: $0.size) } }
            let window = RecoveryWindow(cnpg: retention)!
            var plan = BarmanRetention.plan(scan: scan, objects: objects, layout: layout, window: window, minimumRedundancy: minimumRedundancy, now: now)
            var heads: [String: ObjectInfo?]?
            if checkLocks && !plan.keysToDelete.isEmpty {
                let found = try Self.heads(plan.keysToDelete, client: client, bucket: url.bucket)
                heads = found
                let locked = plan.keysToDelete.compactMap { key -> LockedObject? in
                    guard let lock = found[key]??.lock, lock.isLocked(at: now) else { return nil }
                    return LockedObject(key: key, mode: lock.mode, retainUntil: lock.retainUntil, legalHold: lock.legalHold)
                }
                if !locked.isEmpty {
                    plan = BarmanRetention.plan(scan: scan, objects: objects, layout: layout, window: window, minimumRedundancy: minimumRedundancy,
                                                now: now, locked: Set(locked.map(\.key)))
                    plan.locked = locked
                }
            }
            plan.bucket = url.bucket
            plan.root = layout.root
            // An interrupted prune is finished only as far as today's plan agrees with it: its
            // keys that this plan deletes anyway go with this run, the others stay.
            let interrupted = try unfinished.map { record in
                try PruneReplay.check(record: records.planURL(record.stamp).description, recorded: record.plan, current: plan,
                                      layout: layout, server: server, bucket: url.bucket)
            }
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
            var stamp: String?
            if !plan.keysToDelete.isEmpty {
                // Record first: a deletion is never unaccounted for, and an interrupted one is finished by the next run.
                // Unique even for two runs in one second: a record's name must never be reused.
                let f = ISO8601DateFormatter()
                f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                let name = f.string(from: now) + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
                try records.record(plan, stamp: name)
                let outcome = try delete(plan.keysToDelete, client: client, bucket: url.bucket, checkLocks: checkLocks, now: now, heads: heads)
                try records.finish(name, outcome)
                if output == .table { print("recorded in \(records.planURL(name)); \(outcome.summary)") }
                try outcome.throwIfFailed()
                stamp = name
            }
            // This run did what each interrupted one may still do: their records are closed.
            for (record, i) in zip(unfinished, interrupted) {
                try records.finish(record.stamp, PruneOutcome(deleted: i.stillSelected.count, supersededBy: stamp, keptNoLongerSelected: i.noLongerSelected.count,
                                                              refused: i.refused.count))
            }
        }
    }

    /// HEAD of each key (nil: gone), 16 at a time: its version and its lock.
    static func heads(_ keys: [String], client: S3Client, bucket: String) throws -> [String: ObjectInfo?] {
        let found = try Parallel.map(keys, threads: 16) { try client.headIfPresent(S3URL(bucket: bucket, key: $0)) }
        return Dictionary(zip(keys, found), uniquingKeysWith: { a, _ in a })
    }

    /// Deletes `keys`. On a bucket with Object Lock (and so versions) the exact current version
    /// goes, so the space is freed instead of hidden behind a delete marker; a version still
    /// locked is left and counted, not reported key by key as an error.
    func delete(_ keys: [String], client: S3Client, bucket: String, checkLocks: Bool, now: Date, heads known: [String: ObjectInfo?]? = nil) throws -> PruneOutcome {
        var outcome = PruneOutcome()
        var versions = keys.map { ObjectVersion(key: $0) }
        if checkLocks {
            var heads = known ?? [:]
            let unknown = keys.filter { !heads.keys.contains($0) }
            heads.merge(try Self.heads(unknown, client: client, bucket: bucket)) { a, _ in a }
            versions = []
            for key in keys {
                let head = heads[key] ?? nil
                guard let head else { outcome.deleted += 1; continue }   // gone already (an earlier, interrupted run)
                if let lock = head.lock, lock.isLocked(at: now) {
                    outcome.locked.append(LockedObject(key: key, mode: lock.mode, retainUntil: lock.retainUntil, legalHold: lock.legalHold))
                } else {
                    versions.append(ObjectVersion(key: key, versionID: head.versionID))
                }
            }
        }
        let failures = try client.deleteObjects(bucket: bucket, versions: versions)
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

    /// `cnpg` -> `drctl`, `backups/cnpg` -> `backups/drctl`.
    func siblingPrefix(_ path: String, _ name: String) -> String {
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        guard let slash = trimmed.lastIndex(of: "/") else { return name }
        return String(trimmed[..<slash]) + "/" + name
    }
}

/// What a prune did: deleted, left under Object Lock, failed.
struct PruneOutcome: Codable {
    var deleted = 0
    var locked: [LockedObject] = []
    var failed: [String] = []
    /// For an interrupted prune closed by a later run: that run's record, and what it kept of this one.
    var supersededBy: String?
    var keptNoLongerSelected: Int?
    var refused: Int?

    var summary: String {
        var s = "deleted \(deleted) objects"
        if !locked.isEmpty { s += "; \(locked.count) left under Object Lock" }
        if !failed.isEmpty { s += "; \(failed.count) not deleted" }
        return s
    }

    func throwIfFailed() throws {
        guard !failed.isEmpty else { return }
        for f in failed.prefix(10) { FileHandle.standardError.write(Data("drctl: not deleted: \(f)\n".utf8)) }
        if failed.count > 10 { FileHandle.standardError.write(Data("drctl: … and \(failed.count - 10) more\n".utf8)) }
        throw Exit.failure
    }
}

/// Prune records under drctl's prefix: `<stamp>.json`, the plan, written before any deletion;
/// `<stamp>.done.json`, the outcome, written after. A plan without its outcome was interrupted.
struct PruneRecords {
    let client: S3Client
    let prefix: S3URL

    func planURL(_ stamp: String) -> S3URL { S3URL(bucket: prefix.bucket, key: prefix.key + stamp + ".json") }
    func doneURL(_ stamp: String) -> S3URL { S3URL(bucket: prefix.bucket, key: prefix.key + stamp + ".done.json") }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    func record(_ plan: PrunePlan, stamp: String) throws {
        try client.putObject(planURL(stamp), bytes: Array(try Self.encoder.encode(plan)), contentType: "application/json")
    }

    func finish(_ stamp: String, _ outcome: PruneOutcome) throws {
        guard outcome.failed.isEmpty else { return }   // unfinished: the next --apply tries again
        try client.putObject(doneURL(stamp), bytes: Array(try Self.encoder.encode(outcome)), contentType: "application/json")
    }

    /// Recorded plans without an outcome, oldest first.
    func unfinished() throws -> [(stamp: String, plan: PrunePlan)] {
        var keys: [String] = []
        try client.listObjects(bucket: prefix.bucket, prefix: prefix.key) { keys += $0.objects.map(\.key) }
        let names = Set(keys.map { String($0.dropFirst(prefix.key.count)) })
        // Records are read back from the bucket: through drctl's own RFC 3339 parser, not ICU's
        // (which traps on some malformed times).
        let decoder = DrillEvidence.decoder
        return try names.filter { $0.hasSuffix(".json") && !$0.hasSuffix(".done.json") && !$0.contains("/") }.sorted().compactMap { name in
            let stamp = String(name.dropLast(5))
            guard !names.contains(stamp + ".done.json") else { return nil }
            var body: [UInt8] = []
            try client.getObject(planURL(stamp)) { chunk in
                guard body.count + chunk.count <= 64 << 20 else { throw LocalError("\(planURL(stamp)) is larger than 64 MiB: not a prune record") }
                body += chunk
            }
            do {
                return (stamp, try decoder.decode(PrunePlan.self, from: Data(body)))
            } catch {
                throw LocalError("the unfinished prune record \(planURL(stamp)) cannot be read (\(error)): refused (nothing deleted); remove it if it is not drctl's")
            }
        }
    }
}

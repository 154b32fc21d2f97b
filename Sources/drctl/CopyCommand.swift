import Age
import ArgumentParser
import Catalog
import Foundation
import Layout
import Policy
import Replication
import Storage
import Support

struct CopyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Copy each ObjectStore's backups to the stores its policy names in spec.copies (3-2-1).",
        discussion: """
            Copies what is missing or changed, by key, size and the checksum drctl recorded in the \
            copy (<drctl prefix>/copies/<store>.json in the copy's bucket): a re-run copies nothing \
            that is in place, and a run stopped by a kill is finished by the next one without \
            copying anything twice or half. Each kind of object (barman, velero, drctl) goes from \
            the source's prefix to the copy's. Nothing is ever deleted on the copy, whatever the \
            source lost (the copy's own retention, `drctl prune --source`, removes what it no \
            longer needs). The copy is reached with its own ObjectStore's endpoint and its own \
            keys (--to-credentials-dir, or its Secret mounted at $DRCTL_SECRETS_DIR/<secretName>), \
            never the source's. Exit status 1 when any object failed (the next run retries it) or \
            when a write-once object (base backup tar, WAL, history file, a DONE backup.info, drctl record) \
            changed at the source after it was copied: the copy keeps the original and puts the new \
            version beside it under drctl's prefix (changed/), never over it.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var s3: S3Options
    @Option(help: ArgumentHelp("Policy files or directories.", valueName: "path")) var policies: [String] = ["policies"]
    @Option(help: ArgumentHelp("Only the copies of this ObjectStore (default: every store with spec.copies).", valueName: "name")) var store: String?
    @Option(help: ArgumentHelp("Only the copy to this ObjectStore.", valueName: "name")) var to: String?
    @Option(help: ArgumentHelp("Directory of the copy's key files (ACCESS_KEY_ID, SECRET_ACCESS_KEY); default: $DRCTL_SECRETS_DIR (/etc/drctl/secrets)/<its credentials.secretName>.", valueName: "dir"))
    var toCredentialsDir: String?
    @Option(help: ArgumentHelp("The copy's endpoint instead of its policy's (e.g. from outside its cluster).", valueName: "url")) var toEndpoint: String?
    @Option(help: ArgumentHelp("Copy into this instead of the copy's bucket: file:///path (a disk laid out as the bucket) or s3://bucket on the copy's endpoint.", valueName: "url"))
    var target: String?
    @Flag(help: "Show what would be copied, copy nothing.") var dryRun = false
    @Flag(help: "First read back every object the copy's record lists and check its content against the record (SHA-256), on every kind of target: what is damaged is named, copied again from the source (the damaged object kept beside it) and the run exits 1. Reads the whole copy; an encrypted copy needs --identity for its content (else sizes only).")
    var verify = false
    @Flag(help: "Rewrite every object on the copy that is encrypted to other recipients than the policy's (or, with none, encrypted at all), read back from the copy itself with --identity: objects the source no longer has included. Copies nothing new.")
    var reencrypt = false
    @Option(help: "Objects copied at once.") var workers = 8
    @Option(help: ArgumentHelp("Where large objects pass through (a private directory, removed afterwards).", valueName: "dir")) var scratchDir: String?
    @Flag(name: .shortAndLong, help: "No progress lines on standard error.") var quiet = false
    @Option(name: [.short, .long], help: "Output format: table or json.") var output: OutputFormat = .table

    func validate() throws {
        if workers < 1 || workers > 64 { throw ValidationError("--workers must be 1...64") }
        if target != nil && to == nil { throw ValidationError("--target replaces one copy's bucket: name it with --to") }
        if reencrypt && dryRun { throw ValidationError("--reencrypt rewrites objects: it has no --dry-run (drctl status shows each copy's recipients)") }
    }

    struct Planned: Encodable {
        var source: String
        var target: String
        var toCopy: Int
        var bytes: Int64
        var upToDate: Int
        var onlyOnCopy: Int
        var lagSeconds: Double
        var keys: [String]
        /// Why the copy would copy nothing (Object Lock required and missing).
        var refused: String?
    }

    func run() throws {
        global.bootstrapLogging()
        var failed = false
        try runReportingErrors {
            let set = try loadCheckedPolicies(policies)
            if let store, set.objectStore(named: store) == nil {
                throw ValidationError("no ObjectStore named '\(store)' (have: \(set.objectStores.map(\.name.value).sorted().joined(separator: ", ")))")
            }
            let pairs = set.objectStores.filter { store == nil || $0.name.value == store }.flatMap { s in
                s.copies.filter { to == nil || $0.to.value == to }.compactMap { c in set.objectStore(named: c.to.value).map { (s, c, $0) } }
            }
            guard !pairs.isEmpty else {
                throw ValidationError(to.map { "no copy to ObjectStore '\($0)' in the policies" } ?? "no ObjectStore of the policies names spec.copies")
            }
            let log = StepLog(quiet: quiet)
            var reports: [CopyReport] = [], plans: [Planned] = []
            for (source, copy, targetStore) in pairs {
                let (runner, routes) = try s3.copyRunner(source, copy, targetStore, credentialsDir: toCredentialsDir, endpoint: toEndpoint, url: target,
                                                         workers: workers, spool: scratchDir, log: log.callAsFunction)
                let (from, into) = (runner.source, runner.target)
                let label = "\(source.name.value) -> \(targetStore.name.value)"
                if reencrypt {
                    guard let (identities, _) = try s3.ageIdentities() else {
                        throw ConfigError("--reencrypt reads the copy back: give the identities it is encrypted to now with --identity FILE (or DRCTL_AGE_IDENTITY_FILE)")
                    }
                    log("\(label): re-encrypting \(into.location) for \(copy.recipients.isEmpty ? "no recipients (plain)" : copy.recipients.joined(separator: ", "))")
                    let report = try runner.reencrypt(routes: routes, identities: identities)
                    reports.append(report)
                    failed = failed || !report.failed.isEmpty
                    continue
                }
                if dryRun {
                    let now = Date()
                    let (plan, _, _) = try runner.plan(routes: routes, now: now)
                    plans.append(Planned(source: from.location, target: into.location, toCopy: plan.copy.count, bytes: plan.bytes, upToDate: plan.upToDate,
                                         onlyOnCopy: plan.onlyOnCopy.count, lagSeconds: plan.lag(now: now), keys: plan.copy.map(\.sourceKey),
                                         refused: runner.objectLockShortfall()))
                    failed = failed || runner.objectLockShortfall() != nil
                    continue
                }
                var damaged: [CopyReport.Failure] = []
                if verify {
                    let (checked, bad) = try runner.verify(routes: routes, identities: (try s3.ageIdentities())?.0 ?? [])
                    damaged = bad
                    log("\(label): verified \(checked) objects on \(into.location) by content: \(bad.count) damaged")
                }
                log("\(label): copying \(from.location) (\(copy.kinds.map(\.rawValue).joined(separator: ", "))) to \(into.location)")
                var report = try runner.run(routes: routes)
                report.damaged = damaged
                failed = failed || !damaged.isEmpty
                reports.append(report)
                failed = failed || !report.failed.isEmpty || !report.changedAtSource.isEmpty
            }
            if dryRun {
                if output == .json { return try printJSON(plans) }
                for p in plans {
                    print("\(p.source) -> \(p.target): would copy \(p.toCopy) objects (\(formatBytes(p.bytes))); \(p.upToDate) up to date; "
                          + "\(p.onlyOnCopy) only on the copy (kept); lag \(TimeSpan.humanize(Int(p.lagSeconds)))")
                    if let why = p.refused { print("  refused: Object Lock is required (spec.copies[].objectLock) and \(why)") }
                    for k in p.keys.prefix(20) { print("  \(k)") }
                    if p.keys.count > 20 { print("  … and \(p.keys.count - 20) more") }
                }
                return
            }
            if output == .json { return try printJSON(reports) }
            for r in reports {
                if reencrypt {
                    print("\(r.target): re-encrypted \(r.copied) objects (\(formatBytes(r.bytes))) in \(String(format: "%.1f", r.seconds))s; \(r.upToDate) already for these recipients; record \(r.target)/\(r.stateKey)")
                    for f in r.failed.prefix(10) { print("  FAILED \(f.key): \(f.error)") }
                    if r.failed.count > 10 { print("  … and \(r.failed.count - 10) more failed (-o json lists them all)") }
                    continue
                }
                print("\(r.source) -> \(r.target): copied \(r.copied) objects (\(formatBytes(r.bytes))) in \(String(format: "%.1f", r.seconds))s; "
                      + "\(r.upToDate) up to date; \(r.onlyOnCopy) only on the copy (kept)"
                      + (r.changedDuringCopy.isEmpty ? "" : "; \(r.changedDuringCopy.count) changed during the copy and copied again")
                      + "; record \(r.target)/\(r.stateKey)")
                let notTried = r.failed.filter { $0.error.hasPrefix("not tried:") }, tried = r.failed.filter { !$0.error.hasPrefix("not tried:") }
                for f in tried.prefix(10) { print("  FAILED \(f.key): \(f.error)") }
                if tried.count > 10 { print("  … and \(tried.count - 10) more failed (-o json lists them all)") }
                if let first = notTried.first { print("  FAILED \(notTried.count) objects \(first.error)") }
                for d in r.damaged.prefix(20) { print("  DAMAGED on the copy \(d.key): \(d.error) (copied again from the source)") }
                if r.damaged.count > 20 { print("  … and \(r.damaged.count - 20) more damaged (-o json lists them all)") }
                if r.preserved > 0 { print("  kept \(r.preserved) replaced object(s) of the copy beside their keys (under drctl's prefix, changed/)") }
                if !r.changedAtSource.isEmpty {
                    print("  CHANGED AT THE SOURCE after they were copied (written once by their tools: an attack or a fault); the copy keeps the originals, the new versions are beside them under drctl's prefix (changed/):")
                    for k in r.changedAtSource.prefix(20) { print("    \(k)") }
                    if r.changedAtSource.count > 20 { print("    … and \(r.changedAtSource.count - 20) more (-o json lists them all)") }
                }
            }
        }
        if failed { throw Exit.failure }
    }
}

extension S3Options {
    /// The copy of `source` into `target` as the policy names it, ready to run: the source with
    /// the source's keys, the target with its own (see `copyTarget`).
    func copyRunner(_ source: ObjectStorePolicy, _ copy: ObjectStorePolicy.Copy, _ target: ObjectStorePolicy, credentialsDir: String? = nil,
                    endpoint: String? = nil, url: String? = nil, workers: Int = 8, spool: String? = nil,
                    log: @escaping @Sendable (String) -> Void) throws -> (CopyRunner, [CopyRoute]) {
        let from = try rawAccess(for: source).storage   // copied as stored: Velero's own age files stay sealed
        let into = try copyTarget(target, credentialsDir: credentialsDir, endpoint: endpoint, url: url)
        guard from.identity != into.identity else {
            throw ConfigError("ObjectStore \(source.name.value) and its copy \(target.name.value) are the same bucket (\(from.identity))")
        }
        var runner = CopyRunner(source: from, target: into, stateKey: StoreCopies.stateKey(source, target))
        runner.workers = workers
        runner.recipients = try copy.recipients.map(Age.Recipient.init)
        runner.requireObjectLock = copy.requireObjectLock
        if let spool { runner.spoolBase = spool }
        let label = "\(source.name.value) -> \(target.name.value)"
        runner.progress = { log("\(label): \($0)") }
        return (runner, StoreCopies.routes(source, copy, target))
    }
}

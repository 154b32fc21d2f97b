import ArgumentParser
import Catalog
import Foundation
import Layout
import Support
import Policy
import Render
import Report
import Yams

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show, per workload, whether its backups can actually restore it, measured against its RPO.",
        discussion: """
            Reads the policies and then the bucket itself: Velero backups of each policy's schedules and \
            each database's barman-cloud archive (base backups and the WAL chain after the newest \
            restorable one). Status: PROTECTED; AT RISK (RPO exceeded, a backup overdue, the newest \
            attempt failed or crashed); BROKEN (no restorable backup, or WAL missing after it); NOT \
            CONFIGURED (nothing in the bucket at all). The object store's endpoint comes from the \
            policies unless --endpoint overrides it (e.g. from outside the cluster). Exit status 4 when \
            any workload is not PROTECTED.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var s3: S3Options
    @Option(help: ArgumentHelp("Policy files or directories.", valueName: "path")) var policies: [String] = ["policies"]
    @Argument(help: "Workloads (policy names) to show; default: all.") var workloads: [String] = []
    @Option(help: ArgumentHelp("Read the catalog file instead of the bucket (after drctl catalog sync); measurements are added to its RPO history.", valueName: "file"))
    var catalog: String?
    @Option(help: ArgumentHelp("Read a copy of the ObjectStore's bucket instead (file:///path, or s3://bucket on the policy's endpoint), laid out as the bucket.", valueName: "url"))
    var source: String?
    @OptionGroup var choice: StoreChoice
    @Flag(help: "Do not read the stores' copies (spec.copies); by default each is read with its own keys and a copy lagging past its maxLag makes the workload AT RISK.")
    var skipCopies = false
    @Option(name: [.short, .long], help: "Output format: table, json or yaml.") var output: StatusFormat = .table

    enum StatusFormat: String, ExpressibleByArgument, CaseIterable { case table, json, yaml }

    func validate() throws {
        if (source != nil || choice.store != nil) && catalog != nil {
            throw ValidationError("--catalog indexes the policies' stores and keeps their RPO history; --source reads a copy: give one of them")
        }
    }

    func run() throws {
        global.bootstrapLogging()
        var notProtected = false
        try runReportingErrors {
            let (set, open) = try choice.resolve(try loadCheckedPolicies(policies), s3, copy: source)
            let selected = try set.backupPolicies(named: workloads)
            let now = Date()
            let catalogDB = try catalog.map { try CatalogStore(path: $0) }
            // A copy read with --source is judged as a store, not against its own copies.
            let copies: CopyOpener? = skipCopies || source != nil || choice.store != nil ? nil : s3.copyOpener
            var results = try evaluateWorkloads(selected, in: set, open: open, catalog: catalogDB, now: now, copies: copies).map(\.status)
            results.sort { $0.workload < $1.workload }
            for r in results { try catalogDB?.recordRPO(r, at: now) }
            notProtected = results.contains { $0.status != .protected }
            try print(results)
        }
        if notProtected { throw Exit.notProtected }
    }

    func print(_ results: [WorkloadStatus]) throws {
        switch output {
        case .json:
            try printJSON(results)
        case .yaml:
            let obj = try JSONSerialization.jsonObject(with: try prettyJSONEncoder().encode(results))
            Swift.print(try Yams.dump(object: obj, width: -1, allowUnicode: true, sortKeys: true), terminator: "")
        case .table:
            func t(_ d: Date?) -> String { d.map(formatTimestamp) ?? "never" }
            var rows = [["WORKLOAD", "BACKUP METHOD", "SCHEDULE", "RETENTION", "LAST BACKUP (UTC)", "NEWEST RECOVERABLE POINT", "RPO (MEASURED / OBJECTIVE)", "LAST DRILL (RTO MEASURED / OBJECTIVE)", "STATUS"]]
            for r in results {
                rows.append([r.workload, r.methods.joined(separator: " + "), r.schedules.joined(separator: "; "), r.retention.joined(separator: "; "),
                             t(r.lastBackup), t(r.newestRecoverablePoint),
                             "\(r.rpoSeconds.map { TimeSpan.humanize($0) } ?? "-") / \(TimeSpan.humanize(r.rpoObjectiveSeconds))",
                             r.lastDrill.map { "\(t($0.at)) \($0.result) \(TimeSpan.humanize(Int($0.rtoSeconds.rounded()))) / \(TimeSpan.humanize($0.rtoObjectiveSeconds))" } ?? "never",
                             r.status.rawValue])
            }
            printTable(rows)
            let locks = results.compactMap { r in r.objectLock.map { (r.workload, $0) } }
            if !locks.isEmpty {
                Swift.print("\nObject Lock of the barman-cloud archives:")
                for (w, l) in locks { Swift.print("  \(w): \(l)") }
            }
            let copies = results.filter { !$0.copies.isEmpty }
            if !copies.isEmpty {
                Swift.print("\nCopies (drctl copy):")
                for r in copies {
                    for c in r.copies {
                        let lag = c.error.map { "could not be read: \($0)" }
                            ?? "lag \(TimeSpan.humanize(Int(c.lagSeconds ?? 0)))\(c.maxLagSeconds.map { " (maxLag \(TimeSpan.humanize($0)))" } ?? ""), \(c.pending ?? 0) objects to copy, last complete copy \(t(c.lastSuccess))\(c.newestRecoverablePoint.map { ", newest recoverable point on the copy \(t($0))" } ?? "")"
                        Swift.print("  \(r.workload) -> \(c.store): \(lag)")
                    }
                }
            }
            let predicted = results.compactMap { r in r.predictedRTO.map { (r, $0) } }
            if !predicted.isEmpty {
                Swift.print("\nA restore started now (predicted from the drills' measured rates):")
                for (r, p) in predicted {
                    Swift.print("  \(r.workload): \(RTOText.prediction(p))")
                    for a in r.rtoAdvice ?? [] { Swift.print("    worst case of the schedule: \(a)") }
                }
            }
            // Long-term tiers: older backups that restore to their own end only, not to any time.
            let pointed = results.flatMap { r in r.sources.filter { $0.points != nil }.map { (r.workload, $0) } }
            if !pointed.isEmpty {
                Swift.print("\nRestore points before the point-in-time range (each backup to its own end only):")
                for (w, s) in pointed {
                    let range = s.pitrFrom.map { "any time from \(t($0)) to the newest WAL" } ?? "no point-in-time range"
                    Swift.print("  \(w) \(s.source): \(range); points \((s.points ?? []).map { t($0) }.joined(separator: ", "))")
                }
            }
            for r in results where !r.reasons.isEmpty {
                Swift.print("\n\(r.workload): \(r.status.rawValue)")
                for reason in r.reasons { Swift.print("  - \(reason)") }
            }
        }
    }
}

import ArgumentParser
import Catalog
import Drill
import Foundation
import Support
import ObjectStore
import Policy
import Serve

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Restore drills: restore workloads into a scratch place, check the data, record the evidence.",
        discussion: """
            For each workload: every CNPG database of its policy is restored from the bucket to the \
            same target (default: latest) with a local PostgreSQL in a scratch directory, its Velero \
            restore point is unpacked and checked against its resource list, and the policy's drill \
            checks run (sql, freshness, resourceCount; podsReady needs a cluster drill and is \
            skipped). The evidence (target, achieved restore point, measured RTO and its phases, \
            bytes, each check) goes to the catalog and to <drctl prefix>/evidence/<workload>/ in the \
            bucket, where drctl status reads it. The scratch directory and server are always \
            removed, also on failure, Ctrl-C and SIGTERM, unless --keep. With --mode cluster the \
            restore goes into a labelled scratch namespace instead (Velero Restore, CNPG recovery \
            Clusters without backup or archiving, podsReady from the restored workloads, SQL \
            directly or through check Jobs), which is deleted afterwards. Exit status: 0 when every \
            drill passed, 1 otherwise.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var s3: S3Options
    @OptionGroup var host: HostOptions
    @OptionGroup var kube: KubeOptions
    @Option(help: "host: restore into a scratch directory with a local PostgreSQL; cluster: into a scratch namespace (Velero Restore + CNPG recovery).")
    var mode: DrillMode = .host
    @Option(help: "Cluster drills: the namespace holding the object store credentials Secret that is copied into the drill namespace.")
    var credentialsNamespace = "drctl"
    @Option(help: ArgumentHelp("Cluster drills: the image check Jobs run psql from, when drctl cannot reach the recovered database itself (default: ghcr.io/cloudnative-pg/postgresql:<major>).", valueName: "image"))
    var checkImage: String?
    @Argument(help: "Workloads (policy names) to drill.") var workloads: [String] = []
    @Flag(help: "Drill every workload in the policies.") var all = false
    @Option(help: ArgumentHelp("Policy files or directories.", valueName: "path")) var policies: [String] = ["policies"]
    @Option(help: ArgumentHelp("Drill from a copy of the ObjectStore's bucket instead (file:///path, or s3://bucket on the policy's endpoint), laid out as the bucket. The evidence (marked with the copy) goes to the copy, and to a catalog only with --catalog.", valueName: "url"))
    var source: String?
    @OptionGroup var choice: StoreChoice
    @Option(help: ArgumentHelp("Recovery target (RFC 3339, 'YYYY-MM-DD HH:MM:SS' UTC, latest, -2h).", valueName: "time")) var at = "latest"
    @Flag(help: "Keep the scratch directory and leave the restored server running, for inspection.") var keep = false
    @Option(help: ArgumentHelp("The catalog file evidence is recorded in (default: $DRCTL_DATA_DIR/catalog.sqlite, else ~/.local/share/drctl/catalog.sqlite).", valueName: "file"))
    var catalog: String?
    @Flag(help: "Do not upload the evidence to the bucket.") var noUpload = false
    @Option(help: ArgumentHelp("Push the drilled workloads' metrics to this Prometheus Pushgateway (CronJob mode).", valueName: "url"))
    var pushgateway: String?
    @Option(name: [.short, .long], help: "Output format: table or json.") var output: OutputFormat = .table


    func validate() throws {
        if (source != nil || choice.store != nil) && pushgateway != nil {
            throw ValidationError("--pushgateway reports the policies' stores; a drill from a copy (--source) is not theirs")
        }
        if workloads.isEmpty && !all { throw ValidationError("name the workloads to drill, or --all") }
        if !workloads.isEmpty && all { throw ValidationError("give workloads or --all, not both") }
    }

    func run() throws {
        global.bootstrapLogging()
        var failed = false
        try runReportingErrors {
            let log = StepLog(quiet: host.quiet)
            let set = try loadCheckedPolicies(policies)
            var chosen = try set.backupPolicies(named: all ? [] : workloads)
            let target = try TargetTime.parse(at, now: Date())
            // A drill of a copy proves the copy: it goes to the copy, and to a catalog only when named.
            // A drill of a copy (--source, --store, or the policy's drill.from) proves the copy:
            // its evidence goes to the copy, and to a catalog only when named.
            let named = try catalog.map { try CatalogStore(path: $0) }
            let anyFromPrimary = source == nil && choice.store == nil
            let primaryCatalog = try anyFromPrimary ? (named ?? CatalogStore(path: defaultCatalogPath())) : named
            Cleanup.shared.installSignalHandlers()
            var results: [DrillEvidence] = []
            let (readSet, open) = try choice.resolve(set, s3, copy: source)
            chosen = chosen.map { p in readSet.backupPolicies.first { $0.name.value == p.name.value } ?? p }
            for var p in chosen {
                var runnerOpen = open, readFrom = source ?? choice.store.map { "ObjectStore \($0)" }
                // drill.from: this workload drills from its copy unless the command line chose a source.
                if source == nil && choice.store == nil, let from = p.drill?.from, from.value != p.objectStore.value {
                    let (copied, copyOpen) = try s3.readingStore(from.value, in: set, credentialsDir: nil, endpoint: nil)
                    p = copied.backupPolicies.first { $0.name.value == p.name.value } ?? p
                    (runnerOpen, readFrom) = (copyOpen, "ObjectStore \(from.value) (drill.from)")
                }
                var runner = DrillRunner.make(open: runnerOpen, host: host, kube: kube, mode: mode, credentialsNamespace: credentialsNamespace,
                                              checkImage: checkImage, upload: !noUpload)
                runner.keep = keep
                runner.copy = readFrom
                guard let objectStore = set.objectStore(named: p.objectStore.value) else { continue }
                // The policy's own drill.from is the workload's drill (recorded in its catalog); an ad-hoc --source/--store one is not.
                let adHoc = source != nil || choice.store != nil
                let (evidence, stored) = try runner.run(p, store: objectStore, target: target, catalog: adHoc ? named : primaryCatalog, log: log.callAsFunction)
                failed = failed || !stored
                log("drill of \(p.name.value) \(evidence.result.rawValue.uppercased())\(evidence.error.map { ": \($0)" } ?? "")")
                results.append(evidence)
            }
            failed = failed || results.contains { $0.result == .failed }
            if let pushgateway {
                let evaluated = try evaluateWorkloads(chosen, in: set, open: open, catalog: primaryCatalog, now: Date())   // no copy: validate()
                let snapshot = Snapshot(generatedAt: Date(), workloads: ServiceState.workloads(evaluated, set: set, runbookBase: "runbooks"), stores: [], drills: [])
                do {
                    try pushMetrics(MetricsText.render(snapshot), to: pushgateway)
                    log("metrics pushed to \(pushgateway)")
                } catch {
                    log("could not push metrics: \(error)")
                    failed = true
                }
            }
            switch output {
            case .json:
                print(String(decoding: try DrillEvidence.encoder.encode(results), as: UTF8.self))
            case .table:
                printEvidence(results)
            }
        }
        if failed { throw Exit.failure }
    }

    func printEvidence(_ results: [DrillEvidence]) {
        var rows = [["WORKLOAD", "RESULT", "TARGET", "ACHIEVED RESTORE POINT", "RPO (DATA LOSS / OBJECTIVE)", "RTO (MEASURED / OBJECTIVE)", "FETCHED", "CHECKS"]]
        for e in results {
            let passed = e.checks.filter { $0.result == .passed }.count
            rows.append([e.workload, e.result.rawValue.uppercased(), e.targetTime.map(TargetTime.rfc3339) ?? e.target,
                         e.databases.compactMap(\.achieved).min().map(TargetTime.rfc3339) ?? "-",
                         "\(e.rpoSeconds.map { TimeSpan.humanize(Int($0.rounded())) } ?? "-") / \(TimeSpan.humanize(e.rpoObjectiveSeconds))",
                         "\(String(format: "%.1fs", e.rtoSeconds)) / \(TimeSpan.humanize(e.rtoObjectiveSeconds))",
                         formatBytes(e.bytesFetched), "\(passed)/\(e.checks.count) passed"])
        }
        printTable(rows)
        for e in results {
            print("\n\(e.workload): drill \(e.id) \(e.result.rawValue.uppercased())\(e.error.map { ": \($0)" } ?? "")")
            for d in e.databases {
                if d.backupID.isEmpty {   // a cluster drill: CNPG chose the backup
                    print("  \(d.cluster): recovered by CNPG; \(d.stop)")
                } else {
                    print("  \(d.cluster): base backup \(d.backupID), \(d.walSegments) WAL segments, timeline \(d.timeline.map(String.init) ?? "?"); \(d.stop)")
                }
            }
            let order = ["plan", "download_unpack", "wal_replay", "namespace", "velero_restore", "workloads_ready", "cnpg_recovery", "checks", "teardown"]
            let phases = order.compactMap { k in e.phases[k].map { "\(k) \(String(format: "%.1fs", $0))" } }
            if !phases.isEmpty { print("  phases: \(phases.joined(separator: ", "))") }
            for c in e.checks { print("  [\(c.result.rawValue)] \(c.name): \(c.detail)") }
        }
    }
}

extension DrillMode: ExpressibleByArgument {}

extension DrillRunner {
    /// A runner from the command line's options.
    static func make(open: @escaping StoreOpener, host: HostOptions, kube: KubeOptions, mode: DrillMode, credentialsNamespace: String,
                     checkImage: String?, upload: Bool) -> DrillRunner {
        var r = DrillRunner(open: open, mode: mode, hostOptions: { try host.restoreOptions() }, kube: { try kube.client() })
        r.credentialsNamespace = credentialsNamespace
        r.checkImage = checkImage
        r.upload = upload
        r.transferProgress = {
            let bar = ProgressPrinter(label: "base backup", enabled: !host.quiet)
            return (bar.callback, bar.finish)
        }
        return r
    }
}

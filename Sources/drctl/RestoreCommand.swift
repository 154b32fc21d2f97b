import ArgumentParser
import Catalog
import Drill
import Foundation
import Support
import Kube
import Layout
import ObjectStore
import Policy
import Storage

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Point-in-time recovery of a database from the bucket into a new data directory.",
        discussion: """
            Picks the newest DONE base backup that ended at or before the target, streams it from \
            the bucket into DIR, and replays archived WAL (read ahead by drctl) with a local \
            PostgreSQL of the backup's major version until the target, then promotes. Prints the \
            plan and asks before starting (--yes to skip, --dry-run to stop there). DIR must be \
            new or empty. The restored server never archives and runs nothing the backup asks for: \
            the backup's postgresql.conf is left as it was and unused, its postgresql.auto.conf \
            (which PostgreSQL would read anyway) is set aside as postgresql.auto.conf.drctl-set-aside \
            and the settings it held are named, and drctl's own settings are given on the server's \
            command line; drctl writes drctl-postgresql.conf beside them and prints how to start \
            it (or leaves it running with --start). The store's keys reach restore_command through \
            a 0600 file that is removed once the server is promoted, never its environment. Works from a policy \
            (WORKLOAD --policies DIR) or from the bucket alone (--source s3://bucket/path --server NAME). \
            --at takes RFC 3339 (2026-11-27T04:20:00Z, any offset), '2026-11-27 04:20:00' (UTC), \
            'latest', a relative time such as -2h, or a base backup's id (20261027T040000) to restore that backup to its consistent point only (recovery_target = 'immediate'): how a long-term tier backup, which keeps only its own WAL, is restored. --store NAME reads the workload's copy on ObjectStore NAME with that store's own keys.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var s3: S3Options
    @OptionGroup var host: HostOptions
    @Argument(help: "Workload (policy name) to restore; or give --source and --server.") var workload: String?
    @Option(help: ArgumentHelp("Policy files or directories.", valueName: "path")) var policies: [String] = ["policies"]
    @Option(help: "The workload's CNPG cluster to restore (needed when it has several).") var cluster: String?
    @Option(help: ArgumentHelp("barman-cloud destination (CNPG destinationPath), or a copy of the bucket on disk (file:///path).", valueName: "s3://bucket/path")) var source: String?
    @Option(help: "barman-cloud server name (CNPG serverName).") var server: String?
    @OptionGroup var choice: StoreChoice
    @Option(help: ArgumentHelp("Recovery target.", valueName: "time")) var at: String
    @Option(help: ArgumentHelp("New or empty directory for the recovered data directory.", valueName: "dir")) var to: String?
    @Option(name: .customLong("namespace"), help: ArgumentHelp("Restore into this new Kubernetes namespace instead (Velero Restore + CNPG recovery; needs a WORKLOAD).", valueName: "ns"))
    var intoNamespace: String?
    @Flag(help: "With --namespace: restore into an existing namespace that is not a drill's.") var force = false
    @Option(help: ArgumentHelp("With --namespace: kubeconfig file (default: KUBECONFIG, ~/.kube/config, else in-cluster).", valueName: "file")) var kubeconfig: String?
    @Option(help: "With --namespace: kubeconfig context.") var context: String?
    @Option(help: "With --namespace: the namespace holding the object store credentials Secret.") var credentialsNamespace = "drctl"
    @Flag(help: "Print the plan and stop.") var dryRun = false
    @Flag(name: [.short, .long], help: "Do not ask for confirmation.") var yes = false
    @Flag(help: "Leave the recovered server running (on --port).") var start = false
    @Flag(help: "Replay without fsync (as a drill does), then shut down, sync the data directory once and start with fsync on before handing it over. Faster; a host crash during replay means restoring again.")
    var fastUnsafe = false
    @Option(help: "Port for the recovered server (default: a free one).") var port: Int?
    @Option(name: [.short, .long], help: "Output format: table or json (json prints the plan and, after a restore, the outcome).")
    var output: OutputFormat = .table

    func validate() throws {
        if workload == nil && (source == nil || server == nil) {
            throw ValidationError("give a WORKLOAD (with --policies), or --source s3://bucket/path and --server NAME")
        }
        if workload != nil && source != nil { throw ValidationError("give either a WORKLOAD or --source, not both") }
        if choice.store != nil && workload == nil { throw ValidationError("--store reads a WORKLOAD's copy: name the workload") }
        if choice.store != nil && intoNamespace != nil { throw ValidationError("--store: a namespace restore reads the workload's own store (give --source for a file copy on the host)") }
        if to == nil && intoNamespace == nil && !dryRun { throw ValidationError("--to DIR or --namespace NEW is required (or --dry-run)") }
        if to != nil && intoNamespace != nil { throw ValidationError("--to and --namespace exclude each other") }
        if intoNamespace != nil && workload == nil { throw ValidationError("--namespace restores a WORKLOAD from its policy") }
        if port != nil && !start { throw ValidationError("--port goes with --start") }
    }

    struct Report: Encodable {
        var plan: RestorePlan
        var outcome: RecoveryOutcome?
        /// The newest heartbeat the restore brought back (a policy with `heartbeat:`).
        var heartbeat: DrillEvidence.Heartbeat?
    }

    func run() throws {
        global.bootstrapLogging()
        try runReportingErrors {
            let log = StepLog(quiet: host.quiet)
            let now = Date()
            let target = try TargetTime.parse(at, now: now)
            let (barman, label, preload, cnpg) = try resolveSource()
            log("planning the restore of \(label) to \(target)")
            let (scan, archive) = try BarmanScanner.scanArchive(barman.storage, layout: barman.layout, server: barman.server)
            let plan = try RestorePlanner.plan(server: barman.server, scan: scan, archive: archive, target: target, now: now)
            if output == .table {
                printPlan(plan, label: label)
                fflush(nil)   // the plan before the progress lines and the prompt
            }
            if dryRun {
                if output == .json { try printJSON(Report(plan: plan, outcome: nil)) }
                return
            }
            if !yes {
                guard isatty(STDIN_FILENO) == 1 else {
                    throw ValidationError("refusing to restore without confirmation: standard input is not a terminal (pass --yes)")
                }
                FileHandle.standardOutput.write(Data("Proceed? [y/N] ".utf8))
                guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                    print("aborted")
                    throw ExitCode(1)
                }
            }
            Cleanup.shared.installSignalHandlers()
            if let ns = intoNamespace { return try restoreIntoNamespace(ns, target: target, log: log) }
            guard let to else { return }
            var options = try host.restoreOptions()
            options.kind = "restore"
            options.targetDirectory = to.hasPrefix("/") ? to : FileManager.default.currentDirectoryPath + "/" + to
            options.port = port
            options.unsafeReplay = fastUnsafe
            options.allowTCP = true
            options.preloadLibraries = preload
            let bar = ProgressPrinter(label: "base backup", enabled: !host.quiet)
            let (restore, outcome, used): (HostRestore, RecoveryOutcome, RestorePlan)
            do {
                (restore, outcome, used, _) = try HostRestore.runFallingBack(plan: plan, scan: scan, archive: archive, target: target, now: now, source: barman,
                                                                             options: options, progress: log.callAsFunction, transfer: bar.callback)
                bar.finish()
            } catch {
                Cleanup.shared.parkIfAborting()
                bar.finish()
                throw error
            }
            // The data's own word on how far it got: production's newest heartbeat that came back.
            var heartbeat: (DrillEvidence.Check, DrillEvidence.Heartbeat?)?
            if let cnpg, let server = restore.server {
                heartbeat = HeartbeatCheck.run(cnpg, server: server.reader, reference: target.date ?? now, progress: { _ in })
            }
            restore.finish(success: true, keepRunning: start)
            switch output {
            case .json:
                try printJSON(Report(plan: used, outcome: outcome, heartbeat: heartbeat?.1))
            case .table:
                printOutcome(outcome, plan: used)
                if let (check, _) = heartbeat { print("  heartbeat: \(check.result == .passed ? "" : "\(check.result.rawValue.uppercased()): ")\(check.detail)") }
            }
        }
    }

    /// The cluster restore: the workload's namespaces and databases into a new namespace, kept.
    func restoreIntoNamespace(_ ns: String, target: RecoveryTarget, log: StepLog) throws {
        let set = try loadCheckedPolicies(policies)
        guard let p = set.backupPolicies.first(where: { $0.name.value == workload }), let store = set.objectStore(named: p.objectStore.value) else {
            throw ValidationError("no policy named '\(workload ?? "")' with an ObjectStore")
        }
        let config = try KubeConfig.resolve(kubeconfig: kubeconfig, context: context, namespace: nil)
        var drill = ClusterDrill(policy: p, store: store, storage: try s3.access(for: store).storage, kube: try makeKubeClient(config), target: target)
        drill.credentialsNamespace = credentialsNamespace
        let lines = try drill.restore(into: ns, force: force, timeout: TimeInterval(parseSeconds(host.timeout) ?? 7200), progress: log.callAsFunction)
        print("Restored \(p.name.value) into namespace \(ns) (target \(target)):")
        for l in lines { print("  \(l)") }
        print("""
            To cut traffic over: point the application's database host at the new -rw service, scale the old
            workload to zero, and move its Ingress/Service to \(ns). The new Cluster does not back up: add
            drctl's rendered backup section (drctl apply) once it is the primary, under a new serverName.
            """)
    }

    /// The barman source from the policy's store or from the flags, a label for messages, and
    /// the libraries the policy lets the restored server preload.
    func resolveSource() throws -> (BarmanSource, String, [String], BackupPolicy.CNPGCluster?) {
        if let source, let server {
            // A copy of the bucket on a disk (file://) needs no keys and no client options.
            let (access, key) = try s3.open(source)
            return (BarmanSource(access: access, layout: BarmanLayout(root: key), server: server), "\(source) server \(server)", [], nil)
        }
        let (set, open) = try choice.resolve(try loadCheckedPolicies(policies), s3, copy: nil)
        guard let p = set.backupPolicies.first(where: { $0.name.value == workload }) else {
            throw ValidationError("no policy named '\(workload ?? "")' (have: \(set.backupPolicies.map(\.name.value).sorted().joined(separator: ", ")))")
        }
        guard let store = set.objectStore(named: p.objectStore.value) else { throw ConfigError("policy \(p.name.value): no ObjectStore \(p.objectStore.value)") }
        let candidates = p.cnpg.filter { cluster == nil || $0.cluster.value == cluster }
        guard let c = candidates.first else {
            throw ValidationError(p.cnpg.isEmpty ? "workload \(p.name.value) has no CNPG cluster to restore" : "workload \(p.name.value) has no CNPG cluster '\(cluster ?? "")' (have: \(p.cnpg.map(\.cluster.value).joined(separator: ", ")))")
        }
        if candidates.count > 1 {
            throw ValidationError("workload \(p.name.value) has several CNPG clusters (\(candidates.map(\.cluster.value).joined(separator: ", "))): choose one with --cluster")
        }
        return (BarmanSource(access: try open(store), layout: BarmanLayout(root: store.prefixes.barman.value), server: c.serverName.value),
                "\(p.name.value) / \(c.cluster.value) (\(store.barmanDestination) server \(c.serverName.value))", p.drill?.preloadLibraries ?? [], c)
    }

    func printPlan(_ plan: RestorePlan, label: String) {
        let b = plan.backup
        var rows: [(String, String)] = [
            ("target", plan.immediate == true ? "backup \(plan.backup.backupID) to its consistent point (recovery_target = 'immediate')"
                : plan.targetTime.map { "\(TargetTime.postgres($0)) (\(TargetTime.rfc3339($0)))" } ?? "latest (every archived transaction)"),
            ("recoverable range", "\(TargetTime.rfc3339(plan.firstRecoverable)) .. \(plan.newestRecoverable.map(TargetTime.rfc3339) ?? "?")"),
            ("base backup", "\(b.backupID)\(b.name.map { " (\($0))" } ?? ""), ended \(b.endTime.map(TargetTime.rfc3339) ?? "?"), \(b.compression.isEmpty || b.compression == "none" ? "plain tar" : b.compression), \(formatBytes(plan.baseBytes))"),
            ("WAL", "\(plan.walRange) (\(plan.walNeeded) segments, \(formatBytes(plan.walBytes)); \(plan.wal.count) archived after the backup)"),
            ("timelines", plan.timelines.map(String.init).joined(separator: " -> ")),
            ("PostgreSQL", "\(plan.pgMajor) (from backup.info version \(b.pgVersion.map(String.init) ?? "?"))"),
            ("to fetch", formatBytes(plan.baseBytes + plan.walBytes)),
        ]
        if let d = lastDrill(workload: workload), d.bytesFetched > 0, d.rtoSeconds > 0 {
            let rate = Double(d.bytesFetched) / d.rtoSeconds
            let est = Double(plan.baseBytes + plan.walBytes) / rate
            rows.append(("estimated time", "~\(TimeSpan.humanize(max(1, Int(est)))) (drill \(d.id): \(formatBytes(d.bytesFetched)) restored and checked in \(TimeSpan.humanize(max(1, Int(d.rtoSeconds)))))"))
        } else {
            rows.append(("estimated time", "unknown: no drill recorded yet (drctl verify measures it)"))
        }
        if let to { rows.append(("into", to)) }
        print("Restore plan for \(label)")
        for (k, v) in rows { print("  \(k.padding(toLength: 18, withPad: " ", startingAt: 0)) \(v)") }
        for w in plan.warnings { print("  warning: \(w)") }
    }

    func printOutcome(_ o: RecoveryOutcome, plan: RestorePlan) {
        print("""
            Recovered \(o.server) from \(o.backupID) to \(o.achieved.map(TargetTime.rfc3339) ?? "?") on timeline \(o.timeline.map(String.init) ?? "?").
              \(o.stop)
              \(o.walSegmentsRestored) WAL segments replayed; \(formatBytes(o.baseBytes + o.walBytes)) fetched
              data directory: \(o.dataDirectory)
            """)
        if !o.setAsideFiles.isEmpty {
            let names = o.setAside.isEmpty ? " (it sets nothing)" : " (it sets \(o.setAside.joined(separator: ", ")))"
            print("""
                The backup's own \(o.setAsideFiles.map { ($0 as NSString).lastPathComponent.replacingOccurrences(of: ".drctl-set-aside", with: "") }.joined(separator: " and ")) was not read\(names):
                  kept as \(o.setAsideFiles.joined(separator: ", ")); move it back only when this directory is to run with
                  those settings (as the new primary, under a new serverName if it archives).
                """)
        }
        let conf = o.dataDirectory + "/drctl-postgresql.conf"
        let bin = (geteuid() == 0 ? "runuser -u \(host.runAs) -- " : "") + (host.pgBin ?? "/usr/lib/postgresql/\(plan.pgMajor)/bin")
        if start {
            print("The server is running on 127.0.0.1:\(o.port) (socket in \(o.dataDirectory)). Stop it with:\n  \(bin)/pg_ctl -D \(o.dataDirectory) stop")
        } else {
            print("""
                It is stopped, promoted and will not archive. Start it with:
                  \(bin)/pg_ctl -D \(o.dataDirectory) -o "-c config_file=\(conf)" -l \(o.dataDirectory)/drctl-postgres.log start
                (its own postgresql.conf is kept unchanged beside drctl-postgresql.conf)
                """)
        }
    }
}

import ArgumentParser
import Catalog
import Foundation
import Layout
import Support
import Policy
import Render
import Storage

struct BackupsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backups",
        abstract: "List the backups in the bucket: barman-cloud base backups with their WAL chain, and Velero backups.",
        discussion: """
            Reads the bucket directly, as in a disaster when the cluster is gone: give a barman-cloud \
            destination and server (--source s3://bucket/path --server NAME, CNPG's destinationPath and \
            serverName; without --server every server under the path) and/or a Velero storage \
            location (--velero s3://bucket/prefix). A barman backup is restorable when it is DONE, its \
            data tar is present and its own WAL is archived; WAL CHAIN END is the last segment of the \
            unbroken run from its begin_wal, and GAPS names missing segments after that.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var s3: S3Options
    @Argument(help: "Workloads (policy names) whose backups to list; needs --policies.") var workloads: [String] = []
    @Option(help: ArgumentHelp("Policy files or directories: list the backups of the named workloads (or all).", valueName: "path"))
    var policies: [String] = []
    @Option(help: ArgumentHelp("barman-cloud destination (CNPG destinationPath), or a copy of it on disk (file:///path).", valueName: "s3://bucket/path")) var source: String?
    @Option(help: "barman-cloud server name (CNPG serverName); default: every server under --source.") var server: String?
    @Option(help: ArgumentHelp("Velero storage location: bucket and prefix (or file:///path).", valueName: "s3://bucket/prefix")) var velero: String?
    @OptionGroup var choice: StoreChoice
    @Flag(help: "Count Velero backups that ended PartiallyFailed as restore points.") var allowPartiallyFailed = false
    @Option(help: ArgumentHelp("Read the catalog file instead of the bucket (after drctl catalog sync).", valueName: "file")) var catalog: String?
    @Option(name: [.short, .long], help: "Output format: table or json.") var output: OutputFormat = .table

    func validate() throws {
        if source == nil && velero == nil && policies.isEmpty {
            throw ValidationError("give --policies DIR [WORKLOAD…], or --source s3://bucket/path (barman-cloud) and/or --velero s3://bucket/prefix")
        }
        if !workloads.isEmpty && policies.isEmpty { throw ValidationError("workload names need --policies DIR") }
        if server != nil && source == nil { throw ValidationError("--server goes with --source") }
        if choice.store != nil && policies.isEmpty { throw ValidationError("--store reads the workloads' copy: give --policies DIR") }
    }

    struct Report: Encodable {
        var barman: [BarmanServerScan]
        var velero: [VeleroBackupEntry]
    }

    func run() throws {
        global.bootstrapLogging()
        try runReportingErrors {
            let store = try catalog.map { try CatalogStore(path: $0) }
            // s3://bucket/prefix through drctl's client (and the catalog, if given); file:///path
            // reads a directory laid out as the bucket (a copy on a disk, an air-gapped host).
            func reader(_ location: String) throws -> (any StorageReader, String) {
                let (access, key) = try s3.open(location)
                return (backupReader(access.storage, catalog: store), key)
            }
            var report = Report(barman: [], velero: [])
            if let source {
                let (reader, key) = try reader(source)
                let layout = BarmanLayout(root: key)
                let servers = try server.map { [$0] } ?? BarmanScanner.servers(reader, layout: layout)
                if servers.isEmpty { FileHandle.standardError.write(Data("drctl: no barman-cloud servers under \(source)\n".utf8)) }
                for s in servers { report.barman.append(try BarmanScanner.scan(reader, layout: layout, server: s)) }
            }
            if !policies.isEmpty { try addPolicyBackups(&report, store: store) }
            if let velero {
                let (reader, key) = try reader(velero)
                report.velero = try VeleroScanner.scan(reader, layout: VeleroLayout(root: key), allowPartiallyFailed: allowPartiallyFailed)
            }
            switch output {
            case .json:
                try printJSON(report)
            case .table:
                printTables(report)
            }
        }
    }

    /// The backups of the chosen workloads: their CNPG servers and their Velero schedules.
    func addPolicyBackups(_ report: inout Report, store catalogStore: CatalogStore?) throws {
        let (set, open) = try choice.resolve(try loadCheckedPolicies(policies), s3, copy: nil)
        let chosen = try set.backupPolicies(named: workloads)
        for p in chosen {
            guard let store = set.objectStore(named: p.objectStore.value) else { continue }
            let reader = backupReader(try open(store).storage, catalog: catalogStore)
            for c in p.cnpg {
                report.barman.append(try BarmanScanner.scan(reader, layout: BarmanLayout(root: store.prefixes.barman.value), server: c.serverName.value))
            }
            if let v = p.velero {
                let names = Set(v.schedules.map { VeleroLayout.scheduleName(policy: p.name.value, tier: $0.tier.value) })
                report.velero += try VeleroScanner.scan(reader, layout: VeleroLayout(root: store.prefixes.velero.value),
                                                        allowPartiallyFailed: allowPartiallyFailed).filter { $0.schedule.map(names.contains) ?? false }
            }
        }
    }

    func printTables(_ r: Report) {
        func t(_ d: Date?) -> String { d.map(formatTimestamp) ?? "-" }
        for s in r.barman {
            print("barman-cloud server \(s.server): \(s.backups.count) backups, \(s.walSegments) WAL segments on timeline(s) \(s.timelines.map(String.init).joined(separator: ",")), newest \(s.newestSegment ?? "-")")
            var rows = [["BACKUP ID", "NAME", "STATUS", "END TIME (UTC)", "BEGIN WAL", "SIZE", "COMPR.", "WAL CHAIN END", "GAPS", "RESTORABLE"]]
            for b in s.backups {
                var status = b.status + (b.error.map { " (\($0))" } ?? "")
                if b.status == "STARTED", let begin = b.beginTime, Date().timeIntervalSince(begin) > StatusEvaluator.crashedAfter {
                    status += " (crashed? began \(formatTimestamp(begin)) UTC)"
                }
                rows.append([b.backupID, b.name ?? "-", status, t(b.endTime), b.beginWAL ?? "-",
                             formatBytes(b.size), b.compression.isEmpty ? "-" : b.compression, b.walChainEnd ?? "-",
                             b.walGaps.isEmpty ? "-" : b.walGaps.joined(separator: " "), b.restorable ? "yes" : "no"])
            }
            printTable(rows)
            for p in s.problems { print("  problem: \(p)") }
            print()
        }
        if !r.velero.isEmpty || velero != nil {
            print("Velero backups: \(r.velero.count)")
            var rows = [["NAME", "SCHEDULE", "PHASE", "COMPLETED (UTC)", "EXPIRES (UTC)", "NAMESPACES", "ERRORS", "RESTORE POINT"]]
            for b in r.velero {
                rows.append([b.name, b.schedule ?? "-", b.phase, t(b.completionTime), t(b.expiration),
                             b.includedNamespaces.isEmpty ? "*" : b.includedNamespaces.joined(separator: ","), String(b.errors),
                             b.restorePoint ? "yes" : "no" + (b.problem.map { " (\($0))" } ?? "")])
            }
            printTable(rows)
        }
    }
}

import ArgumentParser
import Catalog
import Drill
import Foundation
import Policy
import Report
import Support

struct RehearseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rehearse",
        abstract: "Bring the whole site back from a copy: every workload restored from it alone, the site's RTO measured.",
        discussion: """
            The site is gone (its Ceph, its backups with it): every workload of the policies is \
            restored from the named copy (--from, else the kind: Rehearsal policy's from) with the \
            copy's own endpoint and keys (and --identity for an encrypted copy), nothing of the \
            primary's. Workloads with databases start first, up to --parallel at once; one waits \
            for the workloads in its spec.dependsOn. Each is drilled as drctl verify drills it \
            (scratch directory or namespace, the policy's checks, always removed), its evidence \
            stored in the copy. Measured: when each workload was healthy, counted from the start; \
            the site RTO (the last one) against the rehearsal's rto (1h by default) and the largest \
            workload objective; the critical path (the chain of workloads that decided it, and \
            the longest phase of its last). A workload whose store is not copied there fails by \
            name; the others still run. The record is sealed into the copy and kept in the \
            catalog (drctl report shows it). Exit status: 0 when every workload came back within \
            the site RTO, 1 otherwise.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var s3: S3Options
    @OptionGroup var host: HostOptions
    @OptionGroup var kube: KubeOptions
    @Option(help: ArgumentHelp("The ObjectStore the site comes back from: a copy of the workloads' stores (default: the kind: Rehearsal policy's from).", valueName: "name"))
    var from: String?
    @Option(help: ArgumentHelp("Directory of that store's key files (ACCESS_KEY_ID, SECRET_ACCESS_KEY); default: $DRCTL_SECRETS_DIR (/etc/drctl/secrets)/<its credentials.secretName>.", valueName: "dir"))
    var fromCredentialsDir: String?
    @Option(help: ArgumentHelp("That store's endpoint instead of its policy's.", valueName: "url"))
    var fromEndpoint: String?
    @Option(help: "host: each workload into a scratch directory with a local PostgreSQL; cluster: into scratch namespaces (default: the Rehearsal policy's, else host).")
    var mode: DrillMode?
    @Option(help: ArgumentHelp("Workloads restored at once (default: the Rehearsal policy's, else 2).", valueName: "n"))
    var parallel: Int?
    @Option(help: "Cluster drills: the namespace holding the object store credentials Secret copied into drill namespaces.")
    var credentialsNamespace = "drctl"
    @Option(help: ArgumentHelp("Cluster drills: the image check Jobs run psql from.", valueName: "image"))
    var checkImage: String?
    @Argument(help: "Only these workloads (default: every workload of the policies).") var workloads: [String] = []
    @Option(help: ArgumentHelp("Policy files or directories.", valueName: "path")) var policies: [String] = ["policies"]
    @Option(help: ArgumentHelp("The catalog the rehearsal and its drills are recorded in (default: $DRCTL_DATA_DIR/catalog.sqlite, else ~/.local/share/drctl/catalog.sqlite).", valueName: "file"))
    var catalog: String?
    @Flag(help: "Do not store the evidence in the copy.") var noUpload = false
    @Option(name: [.short, .long], help: "Output format: table or json.") var output: OutputFormat = .table

    func validate() throws {
        if let parallel, !(1...32).contains(parallel) { throw ValidationError("--parallel \(parallel): give 1 to 32") }
    }

    func run() throws {
        global.bootstrapLogging()
        var failed = false
        try runReportingErrors {
            let log = StepLog(quiet: host.quiet)
            let set = try loadCheckedPolicies(policies)
            guard let from = from ?? set.rehearsal?.from.value else {
                let copies = Set(set.objectStores.flatMap { $0.copies.map(\.to.value) }).sorted()
                throw ValidationError("name the copy the site comes back from: --from NAME (copies in the policies: \(copies.isEmpty ? "none" : copies.joined(separator: ", "))), or a kind: Rehearsal policy")
            }
            let chosen = try set.backupPolicies(named: workloads)
            let (readSet, open) = try s3.readingStore(from, in: set, credentialsDir: fromCredentialsDir, endpoint: fromEndpoint)
            let pointed = chosen.map { p in readSet.backupPolicies.first { $0.name.value == p.name.value } ?? p }
            Cleanup.shared.installSignalHandlers()
            let mode = mode ?? set.rehearsal?.mode.flatMap(DrillMode.init(rawValue:)) ?? .host
            var runner = DrillRunner.make(open: open, host: host, kube: kube, mode: mode, credentialsNamespace: credentialsNamespace,
                                          checkImage: checkImage, upload: !noUpload)
            runner.copy = "ObjectStore \(from) (rehearsal)"
            let rehearsal = Rehearsal(policies: pointed, set: readSet, from: from, runner: runner,
                                      parallel: parallel ?? set.rehearsal?.parallel ?? 2,
                                      siteRTO: set.rehearsal?.rto.value.seconds ?? 3600,
                                      catalog: try CatalogStore(path: catalog ?? defaultCatalogPath()))
            let line = log.callAsFunction
            let e = rehearsal.run(log: { line($0) })
            let stored = rehearsal.record(e, log: line)
            failed = !e.met || !stored
            switch output {
            case .json: try printJSON(e)
            case .table: print(RehearsalText.render(e))
            }
        }
        if failed { throw Exit.failure }
    }
}

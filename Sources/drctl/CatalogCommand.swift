import ArgumentParser
import Catalog
import Foundation
import Storage
import Support
import Policy
import Serve
import Paths

/// drctl's own state on this host: DRCTL_DATA_DIR, else $XDG_DATA_HOME/drctl or ~/.local/share/drctl.
func dataDirectory() -> String {
    let env = ProcessInfo.processInfo.environment
    if let dir = env["DRCTL_DATA_DIR"], !dir.isEmpty { return dir }
    let base = env["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? "\(NSHomeDirectory())/.local/share"
    return "\(base)/drctl"
}

/// Where the catalog lives unless --catalog says otherwise.
func defaultCatalogPath() -> String { dataDirectory() + "/catalog.sqlite" }

struct CatalogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catalog",
        abstract: "Keep drctl's SQLite index of the bucket: every backup object and the metadata drctl reads.",
        discussion: "The bucket is the source of truth; the catalog can always be rebuilt from it.",
        subcommands: [Sync.self, Rebuild.self])

    struct Target: ParsableArguments {
        @Option(help: ArgumentHelp("Policy files or directories: sync every ObjectStore's Velero and barman prefixes.", valueName: "path"))
        var policies: [String] = []
        @Option(help: ArgumentHelp("barman-cloud destination to sync (CNPG destinationPath), or a copy on disk (file:///path).", valueName: "s3://bucket/path")) var source: String?
        @Option(help: ArgumentHelp("Velero storage location to sync (or file:///path).", valueName: "s3://bucket/prefix")) var velero: String?
        @Option(help: ArgumentHelp("With --policies: sync a copy of the ObjectStores' bucket instead (file:///path, or s3://bucket on the policy's endpoint), laid out as the bucket.", valueName: "url"))
        var storeCopy: String?
        @Option(help: ArgumentHelp("The catalog file (default: $DRCTL_DATA_DIR/catalog.sqlite, else ~/.local/share/drctl/catalog.sqlite).", valueName: "file"))
        var catalog: String?
        @Flag(help: "If another sync holds the catalog, exit at once instead of waiting for it.") var noWait = false
        @Flag(help: "List every key, including WAL directories that barman only appends to (otherwise done when the last full listing is over a day old).")
        var full = false

        func validate() throws {
            if policies.isEmpty && source == nil && velero == nil {
                throw ValidationError("give --policies DIR, or --source s3://bucket/path and/or --velero s3://bucket/prefix")
            }
        }

        var path: String { catalog ?? defaultCatalogPath() }

        /// Everything to sync: each policy ObjectStore's prefixes (from a copy with --store-copy),
        /// and the --source and --velero locations.
        func items(_ s3: S3Options) throws -> [CatalogSync.Item] {
            var out: [CatalogSync.Item] = []
            if !policies.isEmpty {
                let set = try loadCheckedPolicies(policies)
                let open = try s3.opener(copy: storeCopy)
                for store in set.objectStores { out += CatalogSync.items(store, storage: try open(store).storage) }
            }
            for (u, kind) in [(source, CatalogStore.PrefixKind.barman), (velero, .generic)] {
                guard let u else { continue }
                let (access, key) = try s3.open(u)
                out.append(CatalogSync.Item(storage: access.storage, prefix: key, kind: kind))
            }
            return out
        }
    }

    static func notice(_ line: String) { FileHandle.standardError.write(Data("drctl: \(line)\n".utf8)) }

    @discardableResult
    static func runSync(_ target: Target, _ s3: S3Options, output: OutputFormat) throws -> [CatalogStore.SyncResult] {
        let items = try target.items(s3)
        var synced: [CatalogStore.SyncResult] = []
        try CatalogSync.withLock(target.path, noWait: target.noWait, notice: notice) {
            let results = try CatalogSync.sync(items, into: try CatalogStore(path: target.path), full: target.full) { line in
                if output == .table { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
            }
            synced = results
            switch output {
            case .json:
                try printJSON(results)
            case .table:
                for r in results {
                    print("synced \(r.store)/\(r.prefix) (\(r.full ? "full listing" : "incremental")): \(r.objects) objects, \(r.listed) listed, \(r.fetched) metadata fetched, \(r.removed) removed, \(String(format: "%.2f", r.seconds))s")
                }
            }
        }
        return synced
    }

    /// CronJob mode: every policy's workload metrics from the freshly synced catalog, and each
    /// store's sync outcome, pushed to a Pushgateway.
    static func pushAfterSync(_ target: Target, _ s3: S3Options, results: [CatalogStore.SyncResult], error: (any Error)?, started: Date, to gateway: String) throws {
        let set = try loadCheckedPolicies(target.policies)
        let catalog = try CatalogStore(path: target.path)
        let now = Date()
        var stores: [Snapshot.Store] = []
        let open = try s3.opener(copy: target.storeCopy)
        for store in set.objectStores {
            let id = try open(store).storage.identity
            let mine = results.filter { $0.store == id }
            stores.append(Snapshot.Store(name: store.name.value, up: error == nil, lastSyncSuccess: error == nil ? now : nil,
                                         lastSyncSeconds: now.timeIntervalSince(started), syncErrors: error == nil ? 0 : 1,
                                         objectsIndexed: mine.reduce(0) { $0 + $1.objects }))
        }
        let evaluated = try evaluateWorkloads(set.backupPolicies, in: set, open: open, catalog: catalog, now: now)
        let snapshot = Snapshot(generatedAt: now, workloads: ServiceState.workloads(evaluated, set: set, runbookBase: "runbooks"), stores: stores, drills: [])
        try pushMetrics(MetricsText.render(snapshot, now: now), to: gateway)
    }

    struct Sync: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Index the bucket: list it, and fetch only the metadata objects that are new or changed.",
            discussion: "Safe to interrupt and re-run; a second sync of the same catalog waits for the first (or exits with --no-wait).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var s3: S3Options
        @OptionGroup var target: Target
        @Option(name: [.short, .long], help: "Output format: table or json.") var output: OutputFormat = .table
        @Option(help: ArgumentHelp("With --policies: push the workloads' and stores' metrics to this Prometheus Pushgateway (CronJob mode).", valueName: "url"))
        var pushgateway: String?

        func validate() throws {
            if pushgateway != nil && target.policies.isEmpty { throw ValidationError("--pushgateway needs --policies (the metrics are per policy)") }
        }

        func run() throws {
            global.bootstrapLogging()
            try runReportingErrors {
                let started = Date()
                var results: [CatalogStore.SyncResult] = []
                var failure: (any Error)?
                do { results = try CatalogCommand.runSync(target, s3, output: output) } catch { failure = error }
                if let pushgateway {
                    try CatalogCommand.pushAfterSync(target, s3, results: results, error: failure, started: started, to: pushgateway)
                    FileHandle.standardError.write(Data("metrics pushed to \(pushgateway)\n".utf8))
                }
                if let failure { throw failure }
            }
        }
    }

    struct Rebuild: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete the catalog and index the bucket again from scratch.",
            discussion: "The catalog holds nothing the bucket does not: rebuilding loses nothing but time.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var s3: S3Options
        @OptionGroup var target: Target
        @Option(name: [.short, .long], help: "Output format: table or json.") var output: OutputFormat = .table

        func run() throws {
            global.bootstrapLogging()
            try runReportingErrors {
                try CatalogSync.withLock(target.path, noWait: false, notice: CatalogCommand.notice) {
                    for suffix in ["", "-wal", "-shm"] { unlink(target.path + suffix) }
                }
                try CatalogCommand.runSync(target, s3, output: output)
            }
        }
    }
}

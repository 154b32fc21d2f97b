import ArgumentParser
import Catalog
import Foundation
import ObjectStore
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

/// The catalog's name for an object store: endpoint and bucket.
func storeID(_ client: S3Client, bucket: String) -> String { "\(client.config.endpoint)/\(bucket)" }

/// What a command reads backups from: the catalog when one is given, else the bucket itself.
func objectReader(_ client: S3Client, bucket: String, catalog: CatalogStore?) -> ObjectReader {
    catalog.map { $0.reader(store: storeID(client, bucket: bucket)) } ?? S3Reader(client: client, bucket: bucket)
}

extension S3Options {
    /// A client for a policy's ObjectStore: its endpoint, region and addressing unless flags or
    /// the environment say otherwise.
    func makeClient(for store: ObjectStorePolicy) throws -> S3Client {
        try makeClient(defaultEndpoint: store.endpoint.value, defaultRegion: store.region,
                       defaultAddressing: store.pathStyle ? .path : .virtualHosted, defaultCABundle: caBundle == nil ? policyCABundle(store) : nil)
    }

    /// The CA file of a store's `caBundle` (a Secret key): `$DRCTL_SECRETS_DIR/<secret>/<key>`,
    /// `/etc/drctl/secrets/<secret>/<key>` by default, where deploy/ mounts the Secret.
    func policyCABundle(_ store: ObjectStorePolicy) throws -> String? {
        guard let ca = store.ca else { return nil }
        let dir = ProcessInfo.processInfo.environment["DRCTL_SECRETS_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/etc/drctl/secrets"
        let path = "\(dir)/\(ca.name)/\(ca.key)"
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw ConfigError("ObjectStore \(store.name.value) (\(store.name.location)): spec.caBundle is key \(ca.key) of Secret \(ca.name), which drctl reads from \(path): not a readable file (mount the Secret at \(dir)/\(ca.name), set DRCTL_SECRETS_DIR, or pass --ca-bundle FILE)")
        }
        return path
    }
}

struct CatalogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catalog",
        abstract: "Keep drctl's SQLite index of the bucket: every backup object and the metadata drctl reads.",
        discussion: "The bucket is the source of truth; the catalog can always be rebuilt from it.",
        subcommands: [Sync.self, Rebuild.self])

    struct Target: ParsableArguments {
        @Option(help: ArgumentHelp("Policy files or directories: sync every ObjectStore's Velero and barman prefixes.", valueName: "path"))
        var policies: [String] = []
        @Option(help: ArgumentHelp("barman-cloud destination to sync (CNPG destinationPath).", valueName: "s3://bucket/path")) var source: String?
        @Option(help: ArgumentHelp("Velero storage location to sync.", valueName: "s3://bucket/prefix")) var velero: String?
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

        /// A policy ObjectStore's prefixes the catalog indexes: Velero's, barman's, drctl's evidence.
        static func syncPrefixes(_ store: ObjectStorePolicy) -> [(String, CatalogStore.PrefixKind)] {
            [(store.prefixes.velero.value, CatalogStore.PrefixKind.generic), (store.prefixes.barman.value, .barman),
             ([store.prefixes.drctl.value, "evidence"].filter { !$0.isEmpty }.joined(separator: "/"), .generic)]
                .map { ($0.0.isEmpty ? "" : $0.0 + "/", $0.1) }
        }

        /// (client, bucket, prefix, kind) for everything to sync.
        func prefixes(_ s3: S3Options) throws -> [(S3Client, String, String, CatalogStore.PrefixKind)] {
            var out: [(S3Client, String, String, CatalogStore.PrefixKind)] = []
            if !policies.isEmpty {
                let set = try loadCheckedPolicies(policies)
                for store in set.objectStores {
                    let client = try s3.makeClient(for: store)
                    for (p, kind) in Self.syncPrefixes(store) { out.append((client, store.bucket.value, p, kind)) }
                }
            }
            for (u, kind) in [(source, CatalogStore.PrefixKind.barman), (velero, .generic)] {
                guard let u else { continue }
                let url = try S3URL(parsing: u)
                out.append((try s3.makeClient(), url.bucket, url.key.isEmpty || url.key.hasSuffix("/") ? url.key : url.key + "/", kind))
            }
            return out
        }
    }

    /// One sync at a time per catalog file: an exclusive lock beside it.
    static func withLock(_ path: String, noWait: Bool, _ body: () throws -> Void) throws {
        try FileManager.default.createDirectory(atPath: Paths.parent(path), withIntermediateDirectories: true)
        let fd = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LocalError("cannot open \(path).lock: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if noWait {
                FileHandle.standardError.write(Data("drctl: another catalog sync is running on \(path); not waiting\n".utf8))
                return
            }
            FileHandle.standardError.write(Data("drctl: waiting for another catalog sync on \(path)\n".utf8))
            guard flock(fd, LOCK_EX) == 0 else { throw LocalError("cannot lock \(path).lock") }
        }
        try body()
    }

    @discardableResult
    static func runSync(_ target: Target, _ s3: S3Options, output: OutputFormat) throws -> [CatalogStore.SyncResult] {
        let items = try target.prefixes(s3)
        var synced: [CatalogStore.SyncResult] = []
        try withLock(target.path, noWait: target.noWait) {
            let results = try sync(items, into: try CatalogStore(path: target.path), full: target.full) { line in
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

    /// Syncs each (client, bucket, prefix, kind) into `catalog`, in order (the caller holds the lock).
    static func sync(_ items: [(S3Client, String, String, CatalogStore.PrefixKind)], into catalog: CatalogStore, full: Bool,
                     progress: @escaping (String) -> Void) throws -> [CatalogStore.SyncResult] {
        try items.map { client, bucket, prefix, kind in
            try catalog.sync(store: storeID(client, bucket: bucket), prefix: prefix, kind: kind, forceFull: full, client: client, bucket: bucket, progress: progress)
        }
    }

    /// CronJob mode: every policy's workload metrics from the freshly synced catalog, and each
    /// store's sync outcome, pushed to a Pushgateway.
    static func pushAfterSync(_ target: Target, _ s3: S3Options, results: [CatalogStore.SyncResult], error: (any Error)?, started: Date, to gateway: String) throws {
        let set = try loadCheckedPolicies(target.policies)
        let catalog = try CatalogStore(path: target.path)
        let now = Date()
        var stores: [Snapshot.Store] = []
        for store in set.objectStores {
            let id = storeID(try s3.makeClient(for: store), bucket: store.bucket.value)
            let mine = results.filter { $0.store == id }
            stores.append(Snapshot.Store(name: store.name.value, up: error == nil, lastSyncSuccess: error == nil ? now : nil,
                                         lastSyncSeconds: now.timeIntervalSince(started), syncErrors: error == nil ? 0 : 1,
                                         objectsIndexed: mine.reduce(0) { $0 + $1.objects }))
        }
        let evaluated = try evaluateWorkloads(set.backupPolicies, in: set, s3: s3, catalog: catalog, now: now)
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
                try CatalogCommand.withLock(target.path, noWait: false) {
                    for suffix in ["", "-wal", "-shm"] { unlink(target.path + suffix) }
                }
                try CatalogCommand.runSync(target, s3, output: output)
            }
        }
    }
}

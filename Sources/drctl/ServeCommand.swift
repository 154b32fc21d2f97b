import ArgumentParser
import Catalog
import Drill
import Kube
import Foundation
import Layout
import ObjectStore
import Policy
import Render
import Serve
import Paths

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run drctl as a service: catalog syncs and restore drills on schedule, Prometheus metrics, a status page and a JSON API.",
        discussion: """
            Every object store's catalog is synced on --sync-schedule, and every policy with a drill \
            section is drilled on its spec.drill.schedule (five cron fields, or six with seconds \
            first; CRON_TZ= for a time zone, UTC otherwise), --mode host or cluster as drctl verify. \
            Never two drills of one workload at once, at most --max-drills together; a failing job \
            is logged and counted (drctl_job_failures_total) and runs again on schedule. \
            Endpoints: / (status page), /drills/ID, /metrics, /healthz, /readyz, /api/v1/workloads, \
            /api/v1/workloads/NAME/backups, /api/v1/drills, /runbooks/NAME.md. SIGTERM aborts a \
            running drill with its teardown and exits 0.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var s3: S3Options
    @OptionGroup var host: HostOptions
    @OptionGroup var kube: KubeOptions
    @Option(help: ArgumentHelp("Policy files or directories.", valueName: "path")) var policies: [String] = ["policies"]
    @Option(help: ArgumentHelp("Address to listen on: [HOST]:PORT (port 0: any free port, printed at start).", valueName: "address"))
    var listen = ":8080"
    @Option(help: "Drills: host (scratch directory and local PostgreSQL) or cluster (scratch namespace).") var mode: VerifyCommand.Mode = .host
    @Option(help: "At most this many drills run at the same time.") var maxDrills = 1
    @Option(help: ArgumentHelp("When to sync the catalog of every object store (cron, five or six fields).", valueName: "cron"))
    var syncSchedule = "*/15 * * * *"
    @Option(help: ArgumentHelp("The catalog file (default: $DRCTL_DATA_DIR/catalog.sqlite, else ~/.local/share/drctl/catalog.sqlite).", valueName: "file"))
    var catalog: String?
    @Option(help: ArgumentHelp("Directory of the runbooks served at /runbooks/ and linked from the status page.", valueName: "dir"))
    var runbooks = "runbooks"
    @Option(help: "Cluster drills: the namespace holding the object store credentials Secret.") var credentialsNamespace = "drctl"
    @Option(help: ArgumentHelp("Cluster drills: the image check Jobs run psql from.", valueName: "image")) var checkImage: String?
    @Flag(help: "Do not upload drill evidence to the bucket.") var noUpload = false
    enum Auth: String, ExpressibleByArgument, CaseIterable { case none, kubernetes }
    @Option(help: ArgumentHelp("Who may see /, /drills/, /api/ and /runbooks/: none (everyone) or kubernetes (a bearer token the API server accepts, of a user allowed to get drctl.dev/status). /metrics, /healthz and /readyz stay open.", valueName: "mode"))
    var auth: Auth = .none
    @Option(help: ArgumentHelp("Seconds an idle connection is kept open.", valueName: "seconds")) var idleTimeout = 60
    @Option(help: ArgumentHelp("Serve HTTPS with this PEM certificate chain (with --tls-key), e.g. a mounted cert-manager Secret.", valueName: "file"))
    var tlsCert: String?
    @Option(help: ArgumentHelp("The PEM private key of --tls-cert.", valueName: "file")) var tlsKey: String?

    func validate() throws {
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if idleTimeout < 1 { throw ValidationError("--idle-timeout must be at least 1 second") }
    }

    func run() throws {
        global.bootstrapLogging()
        try runReportingErrors {
            let set = try loadCheckedPolicies(policies)
            let (bindHost, port) = try Self.parseListen(listen)
            let catalogPath = catalog ?? defaultCatalogPath()
            try FileManager.default.createDirectory(atPath: Paths.parent(catalogPath), withIntermediateDirectories: true)
            let db = try CatalogStore(path: catalogPath)
            let runner = DrillRunner(s3: s3, host: host, kube: kube, mode: mode, credentialsNamespace: credentialsNamespace,
                                     checkImage: checkImage, upload: !noUpload)
            let state = ServiceState(set: set, s3: s3, catalog: db, runbookBase: "runbooks")
            let log = ServiceLog()
            let syncCron: Cron
            do { syncCron = try Cron(syncSchedule, dialect: .drctl) } catch { throw ValidationError("--sync-schedule '\(syncSchedule)': \(error)") }

            var jobs: [Scheduler.Job] = []
            for store in set.objectStores {
                jobs.append(.init(name: "catalog-sync \(store.name.value)", kind: .sync, cron: syncCron) {
                    try state.sync(store, catalogPath: catalogPath, log: log.callAsFunction)
                })
            }
            for p in set.backupPolicies {
                guard let d = p.drill, let store = set.objectStore(named: p.objectStore.value) else { continue }
                jobs.append(.init(name: "drill \(p.name.value)", kind: .drill(workload: p.name.value), cron: d.schedule.value) {
                    let (evidence, _) = try runner.run(p, store: store, target: .latest, catalog: db) { log("drill \(p.name.value): \($0)") }
                    state.drillFinished(evidence)
                    if evidence.result == .failed { throw LocalError("drill FAILED: \(evidence.error ?? "")") }
                })
            }
            let scheduler = Scheduler(jobs: jobs, maxDrills: maxDrills, log: log.callAsFunction)
            state.failures = { scheduler.failures }
            state.alive = { scheduler.alive(now: Date()) ? (true, "") : (false, "the scheduler has not ticked for 30 s") }

            Cleanup.shared.exitZeroOnTerm = true
            Cleanup.shared.installSignalHandlers()
            // The first picture comes from the catalog as it is; the first sync runs at once.
            state.refresh(log: log.callAsFunction)
            let bound: Int
            do {
                var handlers = state.handlers(runbooksDir: runbooks)
                if auth == .kubernetes {
                    // A user may see the pages with `get` on the virtual resource drctl.dev/status.
                    let review = AccessReview(client: try kube.client())
                    let permission = AccessReview.Attributes(verb: "get", group: "drctl.dev", resource: "status")
                    let gate = AccessGate<AccessReview.User>(
                        authenticate: { try review.authenticate($0) },
                        authorize: { try review.allowed($0, permission) ? nil : "\($0.name) may not get drctl.dev/status" },
                        log: { log(KnownSecrets.shared.redactor.redact($0)) })
                    handlers.authorize = { gate.check($0) }
                }
                bound = try WebServer.start(host: bindHost, port: port, handlers: handlers, idleTimeout: idleTimeout,
                                            tls: tlsCert.flatMap { c in tlsKey.map { (c, $0) } })
            } catch {
                let reason = "\(error)".contains("errno: 98") ? "the address is already in use" : "\(error)"
                throw LocalError("cannot listen on \(bindHost):\(port) (--listen): \(reason)")
            }
            log("listening on \(bindHost):\(bound); \(jobs.count) scheduled jobs")
            for (name, next) in scheduler.schedule { log("  \(name): next \(next.map(PreciseTime.format) ?? "never")") }
            for store in set.objectStores {
                Thread.detachNewThread { try? state.sync(store, catalogPath: catalogPath, log: log.callAsFunction) }
            }
            scheduler.runForever()
        }
    }

    static func parseListen(_ s: String) throws -> (String, Int) {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen '\(s)': expected [HOST]:PORT, e.g. :8080 or 127.0.0.1:8080")
        }
        let host = String(s[..<colon])
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }
}

/// Service log lines: UTC time, then the line, secrets redacted.
final class ServiceLog: @unchecked Sendable {
    let lock = NSLock()
    func callAsFunction(_ line: String) {
        let text = "\(PreciseTime.format(Date()).prefix(23))Z \(KnownSecrets.shared.redactor.redact(line))\n"
        lock.withLock { FileHandle.standardError.write(Data(text.utf8)) }
    }
}

/// What `drctl serve` knows: the snapshot the endpoints render, store health, drill counters.
final class ServiceState: @unchecked Sendable {
    let set: PolicySet
    let s3: S3Options
    let catalog: CatalogStore
    let runbookBase: String
    private let lock = NSLock()
    private var snapshot: Snapshot
    private var stores: [String: Snapshot.Store] = [:]
    private var counters = MetricsText.Counters()
    private var catalogProblem: String?
    private var reportedBad = Set<String>()
    private var version = 0
    private var metricsCache: ([Int], String)?
    private var pageCache: (Int, Date, String)?
    var failures: @Sendable () -> [String: Int] = { [:] }
    var alive: @Sendable () -> (Bool, String) = { (true, "") }

    init(set: PolicySet, s3: S3Options, catalog: CatalogStore, runbookBase: String) {
        self.set = set
        self.s3 = s3
        self.catalog = catalog
        self.runbookBase = runbookBase
        snapshot = Snapshot(generatedAt: Date(), workloads: [], stores: [], drills: [])
        for st in set.objectStores {
            stores[st.name.value] = Snapshot.Store(name: st.name.value, runbooks: Dictionary(uniqueKeysWithValues: ["DrctlCatalogSyncFailing", "DrctlObjectStoreUnreachable"].map { ($0, "\(runbookBase)/\($0).md") }))
        }
    }

    /// One catalog sync of a store (its Velero, barman and evidence prefixes), then a refresh.
    func sync(_ store: ObjectStorePolicy, catalogPath: String, log: @escaping (String) -> Void) throws {
        let t0 = Date()
        do {
            let client = try s3.makeClient(for: store)
            let items = CatalogCommand.Target.syncPrefixes(store).map { (client, store.bucket.value, $0.0, $0.1) }
            var objects = 0
            try CatalogCommand.withLock(catalogPath, noWait: false) {
                objects = try CatalogCommand.sync(items, into: catalog, full: false) { _ in }.reduce(0) { $0 + $1.objects }
            }
            lock.withLock {
                stores[store.name.value]?.up = true
                stores[store.name.value]?.lastSyncSuccess = Date()
                stores[store.name.value]?.lastSyncSeconds = Date().timeIntervalSince(t0)
                stores[store.name.value]?.objectsIndexed = objects
                stores[store.name.value]?.lastError = nil
            }
            log("catalog-sync \(store.name.value): \(objects) objects indexed in \(String(format: "%.2f", Date().timeIntervalSince(t0)))s")
        } catch {
            lock.withLock {
                stores[store.name.value]?.syncErrors += 1
                stores[store.name.value]?.lastSyncSeconds = Date().timeIntervalSince(t0)
                stores[store.name.value]?.lastError = KnownSecrets.shared.redactor.redact("\(error)")
                // Unreachable: no answer at all, or the store failing (5xx after the retries).
                if error is TransportError || ((error as? S3Error)?.status ?? 0) >= 500 {
                    stores[store.name.value]?.up = false
                }
            }
            refresh(log: log)
            throw error
        }
        refresh(log: log)
    }

    func drillFinished(_ e: DrillEvidence) {
        // The snapshot first: a scrape that sees the new count sees the drill's result with it.
        refresh(log: { _ in })
        lock.withLock {
            counters.drillRuns[e.workload, default: [:]][e.result.rawValue, default: 0] += 1
            version += 1
        }
    }

    /// Recomputes the snapshot from the catalog (never the bucket). A store whose catalog
    /// cannot be evaluated leaves its workloads UNKNOWN, with the reason, and the others as they
    /// are; an evidence object that does not decode is skipped and counted.
    func refresh(log: (String) -> Void) {
        let now = Date()
        var workloads: [Snapshot.Workload] = []
        var drills: [DrillEvidence] = []
        var bad: [String] = []
        var problems: [String] = []
        for (storeName, group) in Dictionary(grouping: set.backupPolicies, by: { $0.objectStore.value }).sorted(by: { $0.key < $1.key }) {
            do {
                let evaluated = try evaluateWorkloads(group, in: set, s3: s3, catalog: catalog, now: now)
                for e in evaluated {
                    let client = try s3.makeClient(for: e.store)
                    let reader = objectReader(client, bucket: e.store.bucket.value, catalog: catalog)
                    let (found, undecodable) = try DrillEvidence.all(reader, drctlPrefix: e.store.prefixes.drctl.value, workload: e.policy.name.value)
                    drills += found
                    bad += undecodable
                }
                var evaluatedWorkloads = Self.workloads(evaluated, set: set, runbookBase: runbookBase)
                // The catalog still answers, but from the last sync: nothing is known of now.
                if let down = lock.withLock({ stores[storeName] }), down.up == false {
                    for i in evaluatedWorkloads.indices {
                        let last = evaluatedWorkloads[i].status.status.rawValue
                        evaluatedWorkloads[i].status.status = .unknown
                        evaluatedWorkloads[i].status.reasons = ["object store \(storeName) unreachable: \(down.lastError ?? "no answer")",
                                                                "last known from the catalog\(down.lastSyncSuccess.map { " (synced \(PreciseTime.format($0)))" } ?? ""): \(last)"]
                    }
                }
                workloads += evaluatedWorkloads
            } catch {
                let reason = KnownSecrets.shared.redactor.redact("\(error)")
                problems.append("\(storeName): \(reason)")
                for p in group {
                    var st = StatusEvaluator.evaluate(workloadSpec(p), velero: [], barman: [:], drill: nil, now: now)
                    st.status = .unknown
                    st.reasons = ["object store \(storeName) could not be read: \(reason)"]
                    workloads.append(Snapshot.Workload(status: st, rtoObjectiveSeconds: p.rto.value.seconds, store: storeName,
                                                       timeline: Snapshot.Timeline(points: [], wal: []), runbooks: [:]))
                }
            }
        }
        do {
            // Drills recorded here but not (yet) in the bucket, e.g. with --no-upload.
            let known = Set(drills.map(\.id))
            drills += try catalog.drills(limit: 200).filter { !known.contains($0.id) }
        } catch {
            problems.append("catalog: \(KnownSecrets.shared.redactor.redact("\(error)"))")
        }
        drills.sort { $0.startedAt > $1.startedAt }
        workloads.sort { $0.status.workload < $1.status.workload }
        for key in bad where !lock.withLock({ reportedBad.contains(key) }) {
            log("evidence \(key) does not decode: skipped")
            _ = lock.withLock { reportedBad.insert(key) }
        }
        lock.withLock {
            snapshot = Snapshot(generatedAt: now, workloads: workloads, stores: stores.values.sorted { $0.name < $1.name }, drills: drills)
            snapshot.undecodableEvidence = bad.count
            catalogProblem = problems.isEmpty ? nil : problems.joined(separator: "; ")
            version += 1
        }
        if !problems.isEmpty { log("status refresh: \(problems.joined(separator: "; "))") }
    }

    /// The snapshot's view of evaluated workloads, with the runbooks of the alerts about each.
    static func workloads(_ evaluated: [EvaluatedWorkload], set: PolicySet, runbookBase: String) -> [Snapshot.Workload] {
        let alerts = Alerts.alerts(set)
        // Cluster-wide alerts that name no workload and are not about one (stores, Velero's and CNPG's own metrics).
        let notAboutWorkloads: Set = ["DrctlCatalogSyncFailing", "DrctlObjectStoreUnreachable", "DrctlVeleroBackupPartiallyFailed", "DrctlWALArchivingFailing"]
        return evaluated.map { e in
            var runbooks: [String: String] = [:]
            for a in alerts where a.labels["workload"] == e.policy.name.value || (a.labels["workload"] == nil && !notAboutWorkloads.contains(a.name)) {
                runbooks[a.name] = "\(runbookBase)/\(a.name).md"
            }
            return Snapshot.Workload(status: e.status, rtoObjectiveSeconds: e.policy.rto.value.seconds, store: e.store.name.value,
                                     timeline: timeline(e), runbooks: runbooks)
        }
    }

    /// Restore points and WAL coverage (gaps named) of one workload, for the status page.
    static func timeline(_ e: EvaluatedWorkload) -> Snapshot.Timeline {
        var points: [Snapshot.Timeline.Point] = []
        let tiers = Dictionary((e.policy.velero?.schedules ?? []).map { (Renderer.veleroScheduleName(policy: e.policy.name.value, tier: $0.tier.value), $0.tier.value) },
                               uniquingKeysWith: { a, _ in a })
        for b in e.velero {
            guard let schedule = b.schedule, let tier = tiers[schedule], let at = b.completionTime ?? b.startTime else { continue }
            points.append(.init(kind: "velero", source: tier, id: b.name, at: at, restorable: b.restorePoint))
        }
        var wal: [Snapshot.Timeline.Span] = []
        for c in e.policy.cnpg {
            guard let (scan, archive) = e.barman[c.serverName.value] else { continue }
            for b in scan.backups {
                guard let at = b.endTime ?? b.beginTime else { continue }
                points.append(.init(kind: "cnpg", source: c.cluster.value, id: b.backupID, at: at, restorable: b.restorable))
            }
            let size = scan.backups.last?.segmentSize ?? 16 << 20
            wal += WALChain.coverage(archive, segmentSize: size).map { .init(cluster: c.cluster.value, from: $0.from, to: $0.to, missing: $0.missing) }
        }
        return Snapshot.Timeline(points: points.sorted { $0.at < $1.at }, wal: wal)
    }

    /// (ready, why not): the catalog file can be read. An unreachable object store does not make
    /// the service unready: the status page is needed most during a store outage, and says so.
    func ready() -> (Bool, String) {
        do {
            _ = try catalog.drills(limit: 1)
            return (true, "")
        } catch {
            return (false, "catalog: \(KnownSecrets.shared.redactor.redact("\(error)"))")
        }
    }

    func current() -> (Snapshot, MetricsText.Counters, Int) {
        let f = failures()
        return lock.withLock {
            var c = counters
            c.jobFailures = f
            var s = snapshot
            s.stores = stores.values.sorted { $0.name < $1.name }
            return (s, c, version)
        }
    }

    func handlers(runbooksDir: String) -> WebServer.Handlers {
        let encoder = DrillEvidence.encoder
        var h = WebServer.Handlers(
            metrics: { [self] in
                // Rendered again on each new snapshot or drill count, on a job failure, and at
                // least once a second (the RPO is measured at scrape time).
                let key = [lock.withLock { version }, failures().values.reduce(0, +), Int(Date().timeIntervalSince1970)]
                if let (cached, text) = lock.withLock({ metricsCache }), cached == key { return text }
                let (s, c, _) = current()
                let text = MetricsText.render(s, counters: c)
                lock.withLock { metricsCache = (key, text) }
                return text
            },
            statusPage: { [self] in
                let (s, _, v) = current()
                // The page moves with the clock (the RPO band, the 30 days): re-drawn at least every 10 s.
                if let (cv, at, html) = lock.withLock({ pageCache }), cv == v, Date().timeIntervalSince(at) < 10 { return html }
                let html = StatusPage.render(s, now: Date())
                lock.withLock { pageCache = (v, Date(), html) }
                return html
            },
            drillPage: { [self] id in current().0.drills.first { $0.id == id }.map(StatusPage.drill) },
            ready: { [self] in ready() },
            workloads: { [self] in (try? encoder.encode(current().0.workloads.map(\.status))) ?? Data("[]".utf8) },
            backups: { [self] name in
                guard let w = current().0.workloads.first(where: { $0.status.workload == name }) else { return nil }
                return try? encoder.encode(w.timeline.points.reversed())
            },
            drills: { [self] in (try? encoder.encode(current().0.drills.prefix(100).map { $0 })) ?? Data("[]".utf8) },
            runbook: { name in
                guard name.hasSuffix(".md"), !name.contains("/"), !name.hasPrefix("."),
                      let text = try? String(contentsOfFile: runbooksDir + "/" + name, encoding: .utf8) else { return nil }
                return text
            })
        h.alive = { [self] in alive() }
        return h
    }
}

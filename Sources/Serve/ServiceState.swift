import AlertPath
import Catalog
import Foundation
import Layout
import Policy
import Render
import Report
import Storage
import Support

/// Service log lines: UTC time, then the line, secrets redacted.
public final class ServiceLog: @unchecked Sendable {
    let lock = NSLock()
    public init() {}
    public func callAsFunction(_ line: String) {
        let text = "\(RFC3339.format(Date()).prefix(23))Z \(KnownSecrets.shared.redactor.redact(line))\n"
        lock.withLock { FileHandle.standardError.write(Data(text.utf8)) }
    }
}

/// What `drctl serve` knows: the snapshot the endpoints render, store health, drill counters.
public final class ServiceState: @unchecked Sendable {
    let set: PolicySet
    let open: StoreOpener
    let catalog: CatalogStore
    let catalogPath: String
    let runbookBase: String
    private let lock = NSLock()
    private var snapshot: Snapshot
    private var stores: [String: Snapshot.Store] = [:]
    private var counters = MetricsText.Counters()
    private var catalogProblem: String?
    private var alertReport: AlertPathReport?
    private var reportedBad = Set<String>()
    private var version = 0
    private var metricsCache: ([Int], String)?
    private var pageCache: (Int, Date, String)?
    public var failures: @Sendable () -> [String: Int] = { [:] }
    public var alive: @Sendable () -> (Bool, String) = { (true, "") }
    /// This replica's part when replicated (nil: alone); asked at each scrape.
    public var role: @Sendable () -> MetricsText.Role? = { nil }
    /// Who holds the lease as last seen (replicated only).
    public var leaderName: @Sendable () -> String? = { nil }
    /// Opens the stores' copies (spec.copies) with their own keys; nil: copies are not read.
    public var copies: CopyOpener?
    /// The heartbeat writers' state, asked at each refresh.
    public var heartbeats: @Sendable () -> [Snapshot.Heartbeat] = { [] }

    /// `catalogPath`: the file `catalog` is open on, whose lock each sync holds.
    public init(set: PolicySet, open: @escaping StoreOpener, catalog: CatalogStore, catalogPath: String, runbookBase: String) {
        self.set = set
        self.open = open
        self.catalog = catalog
        self.catalogPath = catalogPath
        self.runbookBase = runbookBase
        snapshot = Snapshot(generatedAt: Date(), workloads: [], stores: [], drills: [])
        for st in set.objectStores {
            stores[st.name.value] = Snapshot.Store(name: st.name.value, runbooks: Dictionary(uniqueKeysWithValues: ["DrctlCatalogSyncFailing", "DrctlObjectStoreUnreachable"].map { ($0, "\(runbookBase)/\($0).md") }))
        }
    }

    /// One catalog sync of a store (its Velero, barman and evidence prefixes), then a refresh.
    public func sync(_ store: ObjectStorePolicy, log: @escaping (String) -> Void) throws {
        let t0 = Date()
        do {
            let items = CatalogSync.items(store, storage: try open(store).storage)
            var objects = 0
            try CatalogSync.withLock(catalogPath, noWait: false, notice: log) {
                objects = try CatalogSync.sync(items, into: catalog, full: false) { _ in }.reduce(0) { $0 + $1.objects }
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
                if StorageError.isUnavailable(error) {
                    stores[store.name.value]?.up = false
                }
            }
            refresh(log: log)
            throw error
        }
        refresh(log: log)
    }

    /// The result of an alert path check, for the metrics and the page.
    public func alertsChecked(_ r: AlertPathReport) {
        lock.withLock {
            alertReport = r
            version += 1
        }
    }

    public func rehearsalFinished(_ e: RehearsalEvidence) {
        refresh(log: { _ in })
    }

    public func drillFinished(_ e: DrillEvidence) {
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
    public func refresh(log: (String) -> Void) {
        let now = Date()
        var workloads: [Snapshot.Workload] = []
        var drills: [DrillEvidence] = []
        var bad: [String] = []
        var forged: [String] = []
        var problems: [String] = []
        for (storeName, group) in Dictionary(grouping: set.backupPolicies, by: { $0.objectStore.value }).sorted(by: { $0.key < $1.key }) {
            do {
                let evaluated = try evaluateWorkloads(group, in: set, open: open, catalog: catalog, now: now, copies: copies)
                for e in evaluated {
                    let reader = backupReader(try open(e.store).storage, catalog: catalog)
                    let (found, undecodable, unauthenticated) = try DrillEvidence.all(reader, drctlPrefix: e.store.prefixes.drctl.value, workload: e.policy.name.value)
                    drills += found
                    bad += undecodable
                    forged += unauthenticated
                }
                var evaluatedWorkloads = Self.workloads(evaluated, set: set, runbookBase: runbookBase)
                // The RPO history drctl report reads: from a catalog this service has synced (the first
                // picture, before any sync, is no measurement), not during a store outage.
                if let st = lock.withLock({ stores[storeName] }), st.up == true, st.lastSyncSuccess != nil {
                    for w in evaluatedWorkloads { try? catalog.recordRPO(w.status, at: now) }
                }
                // The catalog still answers, but from the last sync: nothing is known of now.
                if let down = lock.withLock({ stores[storeName] }), down.up == false {
                    for i in evaluatedWorkloads.indices {
                        let last = evaluatedWorkloads[i].status.status.rawValue
                        evaluatedWorkloads[i].status.status = .unknown
                        evaluatedWorkloads[i].status.reasons = ["object store \(storeName) unreachable: \(down.lastError ?? "no answer")",
                                                                "last known from the catalog\(down.lastSyncSuccess.map { " (synced \(RFC3339.format($0)))" } ?? ""): \(last)"]
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
        let rehearsal = set.rehearsal.map { r in
            var found = (try? catalog.rehearsals(since: now.addingTimeInterval(-400 * 86400))) ?? []
            // The sealed records in the store the site comes back from (another replica's, a CronJob's).
            var forgedRehearsals = 0
            if let store = set.objectStore(named: r.from.value), let access = try? open(store),
               let read = try? RehearsalEvidence.all(access.storage, drctlPrefix: store.prefixes.drctl.value, limit: 20) {
                for e in read.rehearsals where !found.contains(where: { $0.id == e.id }) { found.append(e) }
                forgedRehearsals = read.unauthenticated.count
                for key in read.unauthenticated where !lock.withLock({ reportedBad.contains(key) }) {
                    log("rehearsal record \(key) is not sealed with drctl's record key (unauthenticated): not taken for a rehearsal")
                    _ = lock.withLock { reportedBad.insert(key) }
                }
            }
            // Only a rehearsal of the whole site from the policy's copy says the site comes back:
            // one of some workloads (drctl rehearse app), or from another store, does not.
            let sorted = RehearsalEvidence.wholeSite(found, from: r.from.value, workloads: set.backupPolicies.map(\.name.value))
            var out = Snapshot.Rehearsal(from: r.from.value, objectiveSeconds: r.rto.value.seconds, newest: sorted.first,
                                         newestPassed: sorted.first { $0.result == .passed })
            out.unauthenticated = forgedRehearsals
            return out
        }

        for key in bad where !lock.withLock({ reportedBad.contains(key) }) {
            log("evidence \(key) does not decode: skipped")
            _ = lock.withLock { reportedBad.insert(key) }
        }
        for key in forged where !lock.withLock({ reportedBad.contains(key) }) {
            log("evidence \(key) is not sealed with drctl's record key (unauthenticated): not taken for a drill")
            _ = lock.withLock { reportedBad.insert(key) }
        }
        lock.withLock {
            snapshot = Snapshot(generatedAt: now, workloads: workloads, stores: stores.values.sorted { $0.name < $1.name }, drills: drills)
            snapshot.undecodableEvidence = bad.count
            snapshot.unauthenticatedEvidence = forged.count
            snapshot.rehearsal = rehearsal
            catalogProblem = problems.isEmpty ? nil : problems.joined(separator: "; ")
            version += 1
        }
        if !problems.isEmpty { log("status refresh: \(problems.joined(separator: "; "))") }
    }

    /// The snapshot's view of evaluated workloads, with the runbooks of the alerts about each.
    public static func workloads(_ evaluated: [EvaluatedWorkload], set: PolicySet, runbookBase: String) -> [Snapshot.Workload] {
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
        let tiers = Dictionary((e.policy.velero?.schedules ?? []).map { (VeleroLayout.scheduleName(policy: e.policy.name.value, tier: $0.tier.value), $0.tier.value) },
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
    public func ready() -> (Bool, String) {
        do {
            _ = try catalog.drills(limit: 1)
            return (true, "")
        } catch {
            return (false, "catalog: \(KnownSecrets.shared.redactor.redact("\(error)"))")
        }
    }

    func current() -> (Snapshot, MetricsText.Counters, Int) {
        let f = failures()
        let beats = heartbeats()   // live: a writer's last row is seconds old, not a sync's
        return lock.withLock {
            var c = counters
            c.jobFailures = f
            var s = snapshot
            s.heartbeats = beats
            s.stores = stores.values.sorted { $0.name < $1.name }
            s.alerts = alertReport
            return (s, c, version)
        }
    }

    public func handlers(runbooksDir: String) -> WebServer.Handlers {
        let encoder = DrillEvidence.encoder
        var h = WebServer.Handlers(
            metrics: { [self] in
                // Rendered again on each new snapshot or drill count, on a job failure, and at
                // least once a second (the RPO is measured at scrape time).
                let r = role()
                // The role as rendered: a follower that starts or stops exporting (nobody leads) renders anew.
                let key = [lock.withLock { version }, failures().values.reduce(0, +), Int(Date().timeIntervalSince1970),
                           r.map { ($0.leader ? 1 : 0) + ($0.exportsWork ? 2 : 0) } ?? 4]
                if let (cached, text) = lock.withLock({ metricsCache }), cached == key { return text }
                let (s, c, _) = current()
                let text = MetricsText.render(s, counters: c, role: r)
                lock.withLock { metricsCache = (key, text) }
                return text
            },
            statusPage: { [self] in
                var (s, _, v) = current()
                if let r = role() { s.replica = r.replica; s.leader = r.leader ? r.replica : leaderName() }
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
        h.report = { [self] since in
            guard let window = TimeSpan(dialect: .commandLine, since ?? "30d"), window.seconds > 0 else { return nil }
            let now = Date()
            let statuses = current().0.workloads.map(\.status)
            do {
                return ReportRendering.html(try UptimeReport.from(catalog: catalog, set: set, statuses: statuses,
                                                                 since: now.addingTimeInterval(-Double(window.seconds)), now: now))
            } catch {
                return "<!DOCTYPE html><p>The report could not be made: \(HTML.escape(KnownSecrets.shared.redactor.redact("\(error)")))</p>"
            }
        }
        return h
    }
}

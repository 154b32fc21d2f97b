import AlertPath
import ArgumentParser
import Catalog
import Drill
import Kube
import HTTP
import Foundation
import Layout
import Storage
import Support
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
            /api/v1/workloads/NAME/backups, /api/v1/drills, /runbooks/NAME.md. With a kind: Alerting \
            policy and an Alertmanager URL, the alert path is checked on its spec.checkSchedule as drctl \
            alerts check does (drctl_alert_route_up, the page's alerts line). SIGTERM aborts a \
            running drill with its teardown and exits 0.

            With --leader-election, several replicas run side by side: the one holding the Lease \
            --lease-namespace/--lease-name (coordination.k8s.io/v1, client-go's semantics) runs the \
            drills and copies; every replica syncs its own catalog and serves the page, the API and \
            /metrics. Each drill and copy slot is claimed in the bucket before it starts, so it runs \
            once across failovers; a new leader deletes the scratch namespaces of a drill whose \
            leader went away. A leader that cannot renew within --renew-deadline stops starting work, \
            tears its drill down and exits 1 (its restart rejoins as a follower), before any other \
            replica may take the lease (--lease-duration).
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var s3: S3Options
    @OptionGroup var host: HostOptions
    @OptionGroup var kube: KubeOptions
    @Option(help: ArgumentHelp("Policy files or directories.", valueName: "path")) var policies: [String] = ["policies"]
    @Option(help: ArgumentHelp("Address to listen on: [HOST]:PORT (port 0: any free port, printed at start).", valueName: "address"))
    var listen = ":8080"
    @Option(help: "Drills: host (scratch directory and local PostgreSQL) or cluster (scratch namespace).") var mode: DrillMode = .host
    @Option(help: "At most this many drills run at the same time.") var maxDrills = 1
    @Option(help: ArgumentHelp("When to sync the catalog of every object store (cron, five or six fields).", valueName: "cron"))
    var syncSchedule = "*/15 * * * *"
    @Option(help: ArgumentHelp("When to copy each store to the stores its spec.copies names (cron, five or six fields).", valueName: "cron"))
    var copySchedule = "*/30 * * * *"
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
    @Option(help: ArgumentHelp("Alertmanager's base URL for the alert path check (default: the Alerting policy's spec.alertmanager).", valueName: "url"))
    var alertmanager: String?
    @Flag(help: "Run as one of several replicas: only the holder of the Lease runs drills and copies.") var leaderElection = false
    @Option(help: ArgumentHelp("The Lease's namespace (default: --credentials-namespace).", valueName: "namespace")) var leaseNamespace: String?
    @Option(help: ArgumentHelp("The Lease's name.", valueName: "name")) var leaseName = "drctl"
    @Option(help: ArgumentHelp("This replica's name in the Lease and the metrics (default: $POD_NAME, else the host name).", valueName: "name"))
    var replica: String?
    @Option(help: ArgumentHelp("Seconds a follower waits on an unrenewed Lease before taking it.", valueName: "seconds")) var leaseDuration = 15.0
    @Option(help: ArgumentHelp("Seconds a leader may go without renewing before it stops acting.", valueName: "seconds")) var renewDeadline = 10.0
    @Option(help: ArgumentHelp("Seconds between tries to take or renew the Lease.", valueName: "seconds")) var retryPeriod = 2.0

    func validate() throws {
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if idleTimeout < 1 { throw ValidationError("--idle-timeout must be at least 1 second") }
        if let p = leaseTiming.problems().first { throw ValidationError("--lease-duration \(leaseDuration), --renew-deadline \(renewDeadline), --retry-period \(retryPeriod): \(p)") }
    }

    var leaseTiming: LeaseTiming { LeaseTiming(leaseDuration: leaseDuration, renewDeadline: renewDeadline, retryPeriod: retryPeriod) }

    /// This replica's name: the flag, the pod's name, or the host's.
    var replicaName: String {
        replica ?? ProcessInfo.processInfo.environment["POD_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? ProcessInfo.processInfo.hostName
    }

    func run() throws {
        global.bootstrapLogging()
        try runReportingErrors {
            let set = try loadCheckedPolicies(policies)
            let (bindHost, port) = try Self.parseListen(listen)
            let catalogPath = catalog ?? defaultCatalogPath()
            try FileManager.default.createDirectory(atPath: Paths.parent(catalogPath), withIntermediateDirectories: true)
            let db = try CatalogStore(path: catalogPath)
            // Only builds clients from the command line's values: safe from any thread.
            nonisolated(unsafe) let open = try s3.opener(copy: nil)
            let runner = DrillRunner.make(open: open, host: host, kube: kube, mode: mode, credentialsNamespace: credentialsNamespace,
                                          checkImage: checkImage, upload: !noUpload)
            let state = ServiceState(set: set, open: open, catalog: db, catalogPath: catalogPath, runbookBase: "runbooks")
            state.copies = s3.copyOpener
            let log = ServiceLog()
            let me = replicaName
            // This process's name in the Lease: a restarted pod keeps its name but is not its
            // predecessor (it adopts what that one left, and waits out its lease), as controller-runtime does.
            let identity = "\(me)_\(UUID().uuidString.prefix(8).lowercased())"
            var elector: LeaderElector?
            if leaderElection {
                KubeClient.processUserAgent = "drctl (replica \(me))"
                // Short transport timeouts: a renewal that hangs must not outlast the deadline.
                let leaseClient = try kube.client(timeouts: TimeoutOptions(connect: 2, stall: Int(max(1, retryPeriod))))
                leaseClient.fence = nil   // it must still renew during the teardown and release after it
                elector = LeaderElector(kube: leaseClient, namespace: leaseNamespace ?? credentialsNamespace, name: leaseName,
                                        identity: identity, timing: leaseTiming, log: log.callAsFunction)
            }
            /// A leader-only job's body run once per slot: claimed in `store`'s bucket first
            /// (replicated only), its end recorded after.
            func once(_ job: String, in store: ObjectStorePolicy, _ body: @escaping @Sendable (_ slot: String?) throws -> Void) -> @Sendable (Date) throws -> Void {
                { [elector] slot in
                    guard let elector else { return try body(nil) }
                    let journal = SlotJournal(storage: try open(store).storage, drctlPrefix: store.prefixes.drctl.value, job: job)
                    let stamp = SlotJournal.stamp(slot)
                    if let c = try journal.claim(slot: slot, holder: elector.identity, now: Date()) {
                        log("\(job): slot \(stamp) was started by \(c.holder) at \(RFC3339.format(c.startedAt)); not run again")
                        return
                    }
                    // The lease again, right before the first side effect: a claim written by a
                    // replica that lost its lease meanwhile starts nothing (the new leader adopts it).
                    guard elector.isLeader else {
                        log("\(job): slot \(stamp) claimed, but this replica is no longer the leader: not started")
                        return
                    }
                    do {
                        try body("\(job)/\(stamp)")
                        try journal.end(slot: slot, result: "done", by: elector.identity, now: Date())
                    } catch {
                        try? journal.end(slot: slot, result: "failed", by: elector.identity, now: Date())
                        throw error
                    }
                }
            }
            let syncCron: Cron
            do { syncCron = try Cron(syncSchedule, dialect: .drctl) } catch { throw ValidationError("--sync-schedule '\(syncSchedule)': \(error)") }

            var jobs: [Scheduler.Job] = []
            for store in set.objectStores {
                jobs.append(.init(name: "catalog-sync \(store.name.value)", kind: .sync, cron: syncCron) {
                    try state.sync(store, log: log.callAsFunction)
                })
            }
            let copyCron: Cron
            do { copyCron = try Cron(copySchedule, dialect: .drctl) } catch { throw ValidationError("--copy-schedule '\(copySchedule)': \(error)") }
            for store in set.objectStores {
                for copy in store.copies {
                    guard let target = set.objectStore(named: copy.to.value) else { continue }
                    let job = "copy-\(store.name.value)-\(target.name.value)"
                    jobs.append(.init(name: "copy \(store.name.value) -> \(target.name.value)", kind: .copy, cron: copyCron, slotted: once(job, in: store) { [s3] _ in
                        let (runner, routes) = try s3.copyRunner(store, copy, target, spool: host.scratchDir, log: log.callAsFunction)
                        let r = try runner.run(routes: routes)
                        log("copy \(store.name.value) -> \(target.name.value): copied \(r.copied) objects (\(formatBytes(r.bytes))), \(r.upToDate) up to date, \(r.failed.count) failed")
                        if let f = r.failed.first { throw LocalError("\(r.failed.count) objects failed to copy, e.g. \(f.key): \(f.error)") }
                        if let k = r.changedAtSource.first {
                            throw LocalError("\(r.changedAtSource.count) write-once objects changed at the source after they were copied (the copy keeps the originals), e.g. \(k)")
                        }
                    }))
                }
            }
            // Each drill's slot journal: where `once` claims its slots and a new leader adopts them.
            var drillJournals: [(job: String, store: ObjectStorePolicy)] = []
            for var p in set.backupPolicies {
                guard let d = p.drill, var store = set.objectStore(named: p.objectStore.value) else { continue }
                var drillRunner = runner
                // drill.from: the scheduled drill proves the copy (its evidence names it and goes there).
                if let from = d.from, from.value != store.name.value {
                    let (copied, copyOpen) = try s3.readingStore(from.value, in: set, credentialsDir: nil, endpoint: nil)
                    p = copied.backupPolicies.first { $0.name.value == p.name.value } ?? p
                    store = copied.objectStore(named: from.value) ?? store
                    drillRunner = DrillRunner.make(open: copyOpen, host: host, kube: kube, mode: mode, credentialsNamespace: credentialsNamespace,
                                                   checkImage: checkImage, upload: !noUpload)
                    drillRunner.copy = "ObjectStore \(from.value) (drill.from)"
                }
                let (policy, drillStore, r) = (p, store, drillRunner)
                let job = "drill-\(p.name.value)"
                drillJournals.append((job, drillStore))
                jobs.append(.init(name: "drill \(p.name.value)", kind: .drill(workload: p.name.value), cron: d.schedule.value,
                                  slotted: once(job, in: drillStore) { slot in
                    var r = r
                    r.slot = slot
                    let (evidence, _) = try r.run(policy, store: drillStore, target: .latest, catalog: db) { log("drill \(policy.name.value): \($0)") }
                    state.drillFinished(evidence)
                    if evidence.result == .failed { throw LocalError("drill FAILED: \(evidence.error ?? "")") }
                }))
            }
            if let r = set.rehearsal {
                // The whole site from its copy, on the Rehearsal policy's schedule: one drill slot, its own drills beside.
                let (readSet, copyOpen) = try s3.readingStore(r.from.value, in: set, credentialsDir: nil, endpoint: nil)
                var siteRunner = DrillRunner.make(open: copyOpen, host: host, kube: kube, mode: r.mode.flatMap(DrillMode.init(rawValue:)) ?? mode,
                                                  credentialsNamespace: credentialsNamespace, checkImage: checkImage, upload: !noUpload)
                siteRunner.copy = "ObjectStore \(r.from.value) (rehearsal)"
                let rehearsal = Rehearsal(policies: readSet.backupPolicies, set: readSet, from: r.from.value, runner: siteRunner,
                                          parallel: r.parallel, siteRTO: r.rto.value.seconds, catalog: db)
                if let fromStore = set.objectStore(named: r.from.value) {
                    jobs.append(.init(name: "rehearsal from \(r.from.value)", kind: .drill(workload: "(site rehearsal)"), cron: r.schedule.value,
                                      slotted: once("rehearsal", in: fromStore) { _ in
                        let e = rehearsal.run { log("rehearsal: \($0)") }
                        let stored = rehearsal.record(e) { log("rehearsal: \($0)") }
                        state.rehearsalFinished(e)
                        log("rehearsal \(e.id): \(e.result.rawValue.uppercased()), site RTO \(String(format: "%.1f", e.siteRTOSeconds))s (objective \(r.rto.value)), critical path \(e.criticalPath.joined(separator: " -> "))")
                        if !e.met || !stored { throw LocalError("rehearsal \(e.id) \(e.result == .passed ? "exceeded the site RTO" : "did not bring every workload back")") }
                    }))
                }
            }
            if let a = set.alerting, let url = alertmanager ?? a.alertmanager?.value {
                // The alert path, proven on its own schedule: a test alert to each receiver (DrctlAlertRouteBroken reads the result).
                let cron = try a.checkSchedule?.value ?? Cron("0 * * * *", dialect: .drctl)
                var configured = AlertPathCheck(policy: a, api: AlertmanagerClient(base: url), alertmanager: url)
                configured.namespace = credentialsNamespace
                let check = configured
                jobs.append(.init(name: "alerts-check", kind: .check, cron: cron) {
                    let r = check.run()
                    state.alertsChecked(r)
                    let bad = r.receivers.filter { !$0.up }
                    log("alerts-check: " + (!r.alertmanagerUp ? "Alertmanager \(url) did not answer: \(r.error ?? "")"
                        : bad.isEmpty ? "every receiver delivered" : bad.map { "\($0.receiver) (\($0.integration)) \($0.state.rawValue): \($0.detail)" }.joined(separator: "; ")))
                    if !r.healthy { throw LocalError("the alert path is not healthy") }
                })
            }
            // A new leader starts no work before it has cleaned up after the previous one.
            let adopted = SharedFlag()
            let heartbeats = set.backupPolicies.flatMap { p in p.cnpg.compactMap { c in c.heartbeat.map { Self.heartbeatWriter(p, c, $0) } } }
            state.heartbeats = { heartbeats.map { Snapshot.Heartbeat(workload: $0.workload, cluster: $0.cluster, lastSuccess: $0.state.lastSuccess, error: $0.state.error) } }
            let scheduler = Scheduler(jobs: jobs, maxDrills: maxDrills, leads: { [elector] in elector.map { $0.isLeader && adopted.value } ?? true },
                                      log: log.callAsFunction)
            if let elector {
                state.role = { MetricsText.Role(replica: me, leader: elector.isLeader, exportsWork: elector.isLeader || !elector.anotherLeads) }
                state.leaderName = { elector.holder }
            }
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
            for (name, next) in scheduler.schedule { log("  \(name): next \(next.map(RFC3339.format) ?? "never")") }
            for store in set.objectStores {
                Thread.detachNewThread { try? state.sync(store, log: log.callAsFunction) }
            }
            if let elector {
                let journals = drillJournals
                let adopt: @Sendable () -> Void = { [kube, mode] in
                    // Claims made before this term began (by the store's clock, two seconds of
                    // margin for the skew): what a replica that went away left.
                    defer { adopted.value = true }
                    guard let since = elector.leadingSince else { return }
                    Self.adoptAbandoned(journals, open: open, identity: identity, before: since.addingTimeInterval(-2),
                                        kube: mode == .cluster ? { try kube.client() } : nil, log: log.callAsFunction)
                }
                // On SIGTERM: lead no more before anything is torn down, hand the lease back after.
                Cleanup.shared.addFirstAction { elector.resign() }
                Cleanup.shared.addLastAction { elector.release() }
                Thread.detachNewThread {
                    elector.run(started: { adopted.value = false; Thread.detachNewThread { adopt() } }, lost: {
                        // Another replica may take the lease once it has expired: stop writing
                        // before then. The drill's teardown gets two seconds, the next leader
                        // deletes what it leaves; the restart rejoins as a follower.
                        log("stopping: leadership lost; a running drill is torn down and the process exits 1")
                        // Work first: from here no job writes to a bucket or creates anything in
                        // the cluster; only then the cleanup (which deletes drctl's own scratch).
                        Fence.process.close("this replica lost its lease")
                        elector.resign()
                        Thread.detachNewThread { Cleanup.shared.runAll() }
                        Thread.sleep(forTimeInterval: 2)
                        _exit(1)
                    })
                }
            }
            for w in heartbeats {
                w.start(leads: { [elector] in elector.map { $0.isLeader && adopted.value } ?? true }, log: log.callAsFunction)
            }
            scheduler.runForever()
        }
    }

    /// A new leader's first duty: the slots another process claimed before this term began and
    /// never ended (it died or was cut off mid-job) are ended as adopted, after deleting the
    /// scratch namespaces of their drills (cluster mode; a host drill's directory went with its
    /// pod). "Before" is the claim object's Last-Modified, which the store sets: a claim rewritten
    /// since (by anyone) is not adopted, so a forged holder cannot get a live drill torn down.
    static func adoptAbandoned(_ journals: [(job: String, store: ObjectStorePolicy)], open: StoreOpener, identity: String, before: Date,
                               kube: (() throws -> KubeClient)?, log: (String) -> Void) {
        for (job, store) in journals {
            do {
                let journal = SlotJournal(storage: try open(store).storage, drctlPrefix: store.prefixes.drctl.value, job: job)
                for c in try journal.unfinished(modifiedBefore: before) where c.holder != identity {
                    let slot = "\(job)/\(SlotJournal.stamp(c.slot))"
                    var note = "adopted"
                    if let kube {
                        let (gone, left) = try ClusterDrill.removeAbandoned(try kube(), slot: slot) { log("adopting \(slot): \($0)") }
                        log("adopting \(slot) of \(c.holder): \(gone.count) scratch namespaces deleted\(left.isEmpty ? "" : ", \(left.joined(separator: ", ")) left to the janitor")")
                        if !left.isEmpty { note = "adopted; left to the janitor: \(left.joined(separator: ", "))" }
                    }
                    try journal.end(slot: c.slot, result: note, by: identity, now: Date())
                }
            } catch {
                log("adopting the unfinished slots of \(job): \(error)")
            }
        }
    }

    /// The heartbeat writer of one database: psql as the heartbeat role, its name and password
    /// from the policy's Secret where deploy/ mounts it (`$DRCTL_SECRETS_DIR/<secretName>/`).
    static func heartbeatWriter(_ p: BackupPolicy, _ c: BackupPolicy.CNPGCluster, _ h: BackupPolicy.Heartbeat) -> HeartbeatWriter {
        let dir = "\(S3Options.secretsDirectory)/\(h.secretName)"
        // Read at each beat: a Secret that is missing fails the beat (drctl_heartbeat_up 0,
        // DrctlHeartbeatFailing), not the service; a rotated password is picked up.
        return HeartbeatWriter(workload: p.name.value, cluster: c.cluster.value, heartbeat: h) {
            func read(_ key: String) throws -> String {
                guard let v = try? String(contentsOfFile: "\(dir)/\(key)", encoding: .utf8) else {
                    throw ConfigError("\(dir)/\(key) is not readable (mount Secret \(h.secretName), which CNPG's managed role reads too, at \(dir))")
                }
                return v.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let user = try read("username")
            // The writer is the role the set-up granted INSERT to, nothing wider: a Secret naming another (a superuser's) is refused.
            guard user == HeartbeatSQL.role else {
                throw ConfigError("Secret \(h.secretName) names user '\(user)'; the heartbeat writes only as \(HeartbeatSQL.role) (runbooks/heartbeat.md)")
            }
            let password = try read("password")
            KnownSecrets.shared.add([password])
            var session = PsqlSession(psql: "/usr/bin/psql", host: h.host ?? "\(c.cluster.value)-rw.\(c.namespace).svc", port: h.port,
                                      user: user, password: password, timeout: 10)
            session.sessionOptions = "-c statement_timeout=10000"   // it writes: not a check's read-only session
            return session
        }
    }

    /// A flag set from one thread and read from others.
    final class SharedFlag: @unchecked Sendable {
        private let lock = NSLock()
        private var v = false
        var value: Bool {
            get { lock.withLock { v } }
            set { lock.withLock { v = newValue } }
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


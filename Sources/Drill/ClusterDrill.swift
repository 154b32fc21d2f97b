import Catalog
import Foundation
import Kube
import Layout
import Support
import Storage
import Policy
import Render

/// A restore drill in the cluster: a labelled scratch namespace, a Velero Restore of the
/// workload's namespaces into it, a CNPG recovery of each database to the same instant (no
/// backup, no archiving), the policy's checks, evidence, and the namespace deleted again.
public struct ClusterDrill {
    public var policy: BackupPolicy
    public var store: ObjectStorePolicy
    public var storage: any StorageReader
    public var kube: KubeClient
    public var target: RecoveryTarget
    public var veleroNamespace = "velero"
    /// Where the object store credentials Secret is read from to be copied into the drill
    /// namespace: drctl's own (its RBAC allows reading that one Secret and no other).
    public var credentialsNamespace = "drctl"
    /// CNPG's operator namespace: the only one besides drctl's that may reach a recovery Cluster.
    public var cnpgNamespace = "cnpg-system"
    /// The image check Jobs run psql from (default: CNPG's PostgreSQL image of the backup's major).
    public var checkImage: String?
    public var keep = false
    /// `drctl serve`'s schedule slot, annotated on the scratch namespaces.
    public var slot: String?

    public init(policy: BackupPolicy, store: ObjectStorePolicy, storage: any StorageReader, kube: KubeClient, target: RecoveryTarget) {
        self.policy = policy
        self.store = store
        self.storage = storage
        self.kube = kube
        self.target = target
    }

    /// Deletes the scratch namespaces of a drill whose runner went away (a leader killed
    /// mid-drill): drill namespaces annotated with `slot`, each once the Restore writing into it
    /// has settled. Returns the namespaces deleted, and those left (a Restore still running, a
    /// refused deletion) to the janitor, which deletes them at expiry.
    public static func removeAbandoned(_ kube: KubeClient, slot: String, veleroNamespace: String = "velero",
                                       progress: (String) -> Void) throws -> (deleted: [String], left: [String]) {
        let (deleted, left) = try deleteDrillNamespaces(kube, veleroNamespace: veleroNamespace, settle: 60) { $0[DrillManifests.slotAnnotation] == slot }
        for name in deleted { progress("deleted \(name), left by the drill of slot \(slot)") }
        for (name, why) in left { progress("\(name): \(why); left to the janitor") }
        return (deleted, left.map(\.0))
    }

    /// Deletes drill namespaces whose expiry has passed (left by a killed run). A namespace is
    /// only ever deleted with the drill label and the `drill-` prefix both present, and not while
    /// the Restore writing into it runs. One that cannot be deleted is reported and passed over.
    public static func janitor(_ kube: KubeClient, now: Date, veleroNamespace: String = "velero", progress: (String) -> Void) throws -> [String] {
        let (deleted, left) = try deleteDrillNamespaces(kube, veleroNamespace: veleroNamespace, settle: nil) {
            $0[DrillManifests.expiresAnnotation].flatMap(RFC3339.parse).map { $0 < now } ?? false
        }
        for name in deleted { progress("janitor: deleted expired drill namespace \(name)") }
        for (name, why) in left { progress("janitor: \(name) expired, but \(why); left for the next run") }
        return deleted
    }

    /// The drill namespaces (drctl's label and the `drill-` prefix both, not already going)
    /// whose annotations `which` selects, each deleted unless the Velero Restore writing into it
    /// still runs (after waiting up to `settle` seconds for it): deleting under it would have
    /// Velero make the namespace again, unlabelled. Returns those deleted and those left, with why.
    static func deleteDrillNamespaces(_ kube: KubeClient, veleroNamespace: String, settle wait: TimeInterval?,
                                      which: ([String: String]) -> Bool) throws -> (deleted: [String], left: [(String, String)]) {
        var deleted: [String] = [], left: [(String, String)] = []
        for ns in try kube.list(apiVersion: "v1", kind: "Namespace", labelSelector: "\(DrillManifests.label)=true") {
            let meta = ns["metadata"] as? [String: Any] ?? [:]
            let name = meta["name"] as? String ?? ""
            let labels = meta["labels"] as? [String: String] ?? [:]
            let annotations = meta["annotations"] as? [String: String] ?? [:]
            guard DrillManifests.isDrillNamespace(name: name, labels: labels), which(annotations) else { continue }
            if (ns["status"] as? [String: Any])?["phase"] as? String == "Terminating" { continue }
            do {
                let restore = annotations[DrillManifests.restoreAnnotation] ?? name
                if let wait { settle(kube, restore: restore, veleroNamespace: veleroNamespace, timeout: wait) }
                if let r = try kube.get(apiVersion: "velero.io/v1", kind: "Restore", namespace: veleroNamespace, name: restore), restoreIsWriting(r) {
                    left.append((name, "Velero restore \(restore) still writes into it"))
                    continue
                }
                try kube.deleteNamespace(name)
                deleted.append(name)
            } catch {
                left.append((name, "it could not be deleted (\(error))"))
            }
        }
        return (deleted, left)
    }

    public func run(progress: @escaping (String) -> Void) -> DrillEvidence {
        let started = Date()
        let workload = policy.name.value
        let id = "\(ScratchDirectory.stamp(started))-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        let suffix = String(UInt16.random(in: 0...UInt16.max), radix: 16)
        let ns = DrillManifests.namespaceName(workload: workload, at: started, suffix: suffix)
        var phases: [String: Double] = [:]
        var checks: [DrillEvidence.Check] = []
        var databases: [DrillEvidence.Database] = []
        var failure: String?
        var created: [String] = []
        var sealed: [String] = []
        let teardownState = TeardownState()
        var teardownAction: Int?
        var verifiedAt = Date()
        let deadline = started.addingTimeInterval(Double(policy.rto.value.seconds))
        func phase<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
            let t = Date()
            defer { phases[name, default: 0] += Date().timeIntervalSince(t) }
            return try body()
        }
        progress("cluster drill \(id) of \(workload) in namespace \(ns): target \(target)")
        do {
            // Before any write: the server must confine this account, or drctl does not drill with it.
            sealed.append(try Self.requireConfinement(kube, progress: progress))
            _ = try Self.janitor(kube, now: started, veleroNamespace: veleroNamespace, progress: progress)
            let majors = try precheck(now: started)
            let backup = try veleroBackup(now: started)
            // Every source namespace into a scratch namespace of its own, decided before anything is made.
            let sources = try backup.map { try DrillIsolation.sourceNamespaces(policy: policy.namespaces.map(\.value), backup: $0.namespaces) } ?? []
            let names = DrillIsolation.scratchNames(workload: workload, at: started, suffix: suffix, count: max(1, sources.count))
            let mappings = zip(sources, names).map { DrillIsolation.Mapping(source: $0, scratch: $1) }
            if backup != nil { try DrillIsolation.validate(mappings) }
            let placement = clusterPlacement(mappings, primary: ns)
            let egress = DrillIsolation.Egress(endpoint: store.endpoint.value,
                                               apiServer: policy.cnpg.isEmpty ? DrillIsolation.APIServer(addresses: [], ports: []) : try apiServerEndpoints())
            let expires = RFC3339.format(started.addingTimeInterval(Double(max(policy.rto.value.seconds * 2, 3600))))
            try phase("namespace") {
                // On a signal: the Restore settled first (Velero makes a namespace it restores into
                // again, without drctl's label, if it is deleted under it), then the namespaces.
                teardownAction = Cleanup.shared.addAction { [kube, veleroNamespace, teardownState] in
                    let (restore, namespaces) = teardownState.get()
                    if let restore { Self.settle(kube, restore: restore, veleroNamespace: veleroNamespace, timeout: Self.settleGrace) }
                    for ns in namespaces { try? kube.deleteNamespace(ns, propagation: "Background") }
                }
                for name in names {
                    _ = try kube.create(Self.plain(DrillManifests.namespace(name, drillID: id, workload: workload, expires: expires,
                                                                            restore: backup == nil ? nil : ns, slot: slot)))
                    created.append(name)
                    teardownState.add(namespace: name)
                    try bindDrillRole(in: name, progress: progress)
                    // Sealed before anything is restored into it.
                    let clusters = policy.cnpg.filter { placement[$0.cluster.value] == name }.map(\.cluster.value)
                    for o in DrillIsolation.networkPolicies(namespace: name, drctlNamespace: credentialsNamespace, cnpgNamespace: cnpgNamespace,
                                                            clusters: clusters, egress: egress) {
                        _ = try kube.create(Self.plain(o))
                    }
                    if !clusters.isEmpty { try copyCredentials(into: name) }
                }
                let seal = DrillIsolation.sealSummary(mappings: mappings, clusters: policy.cnpg.map(\.cluster.value), egress: egress,
                                                      modifiers: policy.drill?.modifiers.count ?? 0)
                sealed += seal
                for line in seal { progress("sealed: \(line)") }
            }
            var restoreName: String?
            if let backup {
                let rules = DrillIsolation.modifierRules(policy.drill?.modifiers ?? [])
                _ = try kube.apply(Self.plain(try DrillIsolation.modifiersConfigMap(workload: workload, veleroNamespace: veleroNamespace, rules: rules)),
                                   fieldManager: "drctl", force: true)
                teardownState.set(restore: ns)
                restoreName = try startVeleroRestore(backup.name, name: ns, mappings: mappings, modifiers: DrillIsolation.modifiersName(workload: workload),
                                                     progress: progress)
            }
            try createClusters(placement, progress: progress)
            // Wait for the Restore and the Clusters, with the RTO as the deadline.
            if let restoreName {
                let status = try phase("velero_restore") { try waitVeleroRestore(restoreName, deadline: deadline) }
                let restored = (status["progress"] as? [String: Any])?["itemsRestored"] as? Int ?? 0
                let phaseName = status["phase"] as? String ?? "?"
                // PartiallyFailed alone decides nothing: the checks do.
                checks.append(.init(name: "velero restore \(restoreName)", result: restored > 0 ? .passed : .failed,
                                    detail: "\(phaseName), \(restored) items restored into \(names.joined(separator: ", "))", seconds: phases["velero_restore"] ?? 0))
            }
            let podsReady = restoreName == nil ? nil : try phase("workloads_ready") { try waitWorkloads(in: names, deadline: deadline, progress: progress) }
            var servers: [String: any SQLSession] = [:]
            let statements = DrillChecks.statements(policy.drill?.checks ?? [])
            for c in policy.cnpg {
                let where_ = placement[c.cluster.value] ?? ns
                let status = try phase("cnpg_recovery") { try waitCluster(c, in: where_, deadline: deadline) }
                let (session, via) = try phase("checks") {
                    try sqlSession(c, in: where_, major: majors[c.cluster.value] ?? 16, deadline: deadline,
                                   statements: statements.filter { $0.cluster == c.cluster.value } + HeartbeatCheck.statements(c), progress: progress)
                }
                servers[c.cluster.value] = session
                let achievedText = try session.query(DrillChecks.achievedSQL, database: "postgres")
                databases.append(.init(cluster: c.cluster.value, server: c.serverName.value, backupID: "", target: target.description,
                                       achieved: RFC3339.parse(achievedText), stop: "\(status["phase"] as? String ?? ""); checked \(via)",
                                       timeline: nil, walSegments: 0, baseBytes: 0, walBytes: 0))
            }
            try phase("checks") {
                checks += DrillChecks.run(policy.drill?.checks ?? [], servers: servers, rpo: policy.rpo.value.seconds, reference: target.date ?? started,
                                          podsReady: podsReady, progress: progress)
                checks += HeartbeatCheck.runAll(policy, session: { servers[$0] }, reference: target.date ?? started, databases: &databases, progress: progress)
                for case .resourceCount(let kind, let min) in policy.drill?.checks ?? [] {
                    var n = 0
                    for name in names {
                        n += try kube.list(apiVersion: kind == "Deployment" || kind == "StatefulSet" ? "apps/v1" : "v1", kind: kind, namespace: name).count
                    }
                    checks.append(.init(name: "resourceCount \(kind) >= \(min)", result: n >= min ? .passed : .failed,
                                        detail: "\(n) \(kind) in \(names.joined(separator: ", "))", seconds: 0))
                }
            }
            verifiedAt = Date()
            if let bad = checks.first(where: { $0.result == .failed }) { failure = "check failed: \(bad.name): \(bad.detail)" }
        } catch {
            verifiedAt = Date()
            failure = "\(error)"
        }
        if !created.isEmpty && !keep {
            phase("teardown") {
                if let restore = teardownState.get().0 {
                    Self.settle(kube, restore: restore, veleroNamespace: veleroNamespace, timeout: Self.settleGrace, progress: progress)
                }
                for name in created {
                    do {
                        try kube.deleteNamespace(name)
                    } catch {
                        progress("could not delete \(name) (the next run's janitor will): \(error)")
                        if failure == nil { failure = "teardown: \(error)" }
                    }
                }
                for name in created {
                    do {
                        _ = try waitGone(name, deadline: Date().addingTimeInterval(Self.namespaceDeletionGrace))
                        progress("namespace \(name) deleted")
                    } catch {
                        progress("\(error) (the next run's janitor will delete it)")
                        if failure == nil { failure = "teardown: \(error)" }
                    }
                }
            }
        }
        // Torn down (or kept on purpose): a later signal has nothing of this drill to undo.
        if let teardownAction { Cleanup.shared.removeAction(teardownAction) }
        let rpo = DrillEvidence.rpo(databases, reference: target.date ?? started)
        var evidence = DrillEvidence(id: id, workload: workload, mode: "cluster", host: kube.config.server, startedAt: started, finishedAt: Date(),
                                     target: target.description, targetTime: target.date, result: failure == nil ? .passed : .failed, error: failure,
                                     databases: databases, checks: checks, rtoSeconds: verifiedAt.timeIntervalSince(started),
                                     rtoObjectiveSeconds: policy.rto.value.seconds, rpoSeconds: rpo, rpoObjectiveSeconds: policy.rpo.value.seconds,
                                     phases: phases, bytesFetched: 0)
        evidence.sealed = sealed.isEmpty ? nil : sealed
        return evidence
    }

    /// What a signal's cleanup must undo, filled in as the drill goes.
    final class TeardownState: @unchecked Sendable {
        private let lock = NSLock()
        private var restore: String?
        private var namespaces: [String] = []
        func set(restore r: String) { lock.withLock { restore = r } }
        func add(namespace ns: String) { lock.withLock { namespaces.append(ns) } }
        func get() -> (String?, [String]) { lock.withLock { (restore, namespaces) } }
    }

    /// A Restore's phases after which Velero writes nothing more (velero.io/docs api-types/restore).
    static let restoreSucceededPhases: Set = ["Completed", "PartiallyFailed"]
    static let restoreFailedPhases: Set = ["Failed", "FailedValidation"]

    static func restoreIsTerminal(_ restore: [String: Any]) -> Bool {
        let phase = (restore["status"] as? [String: Any])?["phase"] as? String ?? ""
        return restoreSucceededPhases.contains(phase) || restoreFailedPhases.contains(phase)
    }

    /// Whether Velero has picked the Restore up (a phase past New).
    static func restoreIsStarted(_ restore: [String: Any]) -> Bool {
        let phase = (restore["status"] as? [String: Any])?["phase"] as? String ?? ""
        return !phase.isEmpty && phase != "New"
    }

    /// Whether Velero may still write into the Restore's namespaces: started and not done.
    static func restoreIsWriting(_ restore: [String: Any]) -> Bool {
        restoreIsStarted(restore) && !restoreIsTerminal(restore)
    }

    /// How long a teardown waits for Velero to finish a Restore it is working on, and for the
    /// scratch namespaces to go: a drill ends shortly after its RTO deadline, whatever the
    /// controllers do (what is left then is the janitor's).
    static let settleGrace: TimeInterval = 60
    static let namespaceDeletionGrace: TimeInterval = 120

    /// Waits (at most `timeout`) while Velero works on a drill's Restore: deleting its namespaces
    /// meanwhile would have Velero make them again, without drctl's label (the admission policy
    /// refuses that; without it, no janitor would find them). A Restore Velero has not started
    /// (no phase, or New) writes nothing, so it is not waited for: Velero may never come.
    static func settle(_ kube: KubeClient, restore: String, veleroNamespace: String, timeout: TimeInterval, progress: (String) -> Void = { _ in }) {
        do {
            _ = try kube.waitFor(apiVersion: "velero.io/v1", kind: "Restore", namespace: veleroNamespace, name: restore,
                                 deadline: Date().addingTimeInterval(timeout)) { o in
                guard let o else { return true }
                if !restoreIsStarted(o) { progress("Velero has not started restore \(restore): nothing writes into its namespaces") }
                return !restoreIsWriting(o)
            }
        } catch {
            progress("Velero restore \(restore) still running after \(Int(timeout))s (\(error)); deleting its namespaces anyway")
        }
    }

    /// The admission policy (deploy/admission.yaml) that holds drctl's account to drill namespaces.
    static let confinementPolicy = "drctl-drill-scope"

    /// A service account drills only where the API server confines it: deploy/admission.yaml
    /// matches drctl's account by name, and a renamed account, a policy not installed or not
    /// bound would leave it with cluster-wide namespace deletion and nothing holding it to drill
    /// namespaces. The proof is the server's own answer: a dry-run creation of a namespace that
    /// is not a drill's (RBAC allows it, the policy refuses it) must be refused by that policy,
    /// by name (another policy refusing it, for its own reasons, proves nothing). A person's
    /// account (an administrator running a drill by hand) is not a service account and is not
    /// checked. Returns the evidence line.
    static func requireConfinement(_ kube: KubeClient, progress: (String) -> Void) throws -> String {
        let user = try kube.whoAmI()
        guard user.hasPrefix("system:serviceaccount:") else {
            progress("admission: \(user) is not a service account; drill namespaces are drctl's to keep to")
            return "admission: not checked (\(user) is not a service account)"
        }
        // Not a drill's name: the only rule that refuses it is the one holding drctl to drill namespaces.
        let probe = "drctl-confinement-check-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        do {
            _ = try kube.create(["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": probe]], dryRun: true)
        } catch let e as KubeError where e.message.contains("ValidatingAdmissionPolicy '\(confinementPolicy)'") {
            progress("admission: the API server confines \(user) (a dry-run namespace that is not a drill's was refused)")
            return "admission: the API server confines \(user) to drill namespaces"
        } catch {
            throw RecoveryError("cannot check that the API server confines \(user) to drill namespaces: \(error)")
        }
        throw RecoveryError("the API server does not confine \(user): a dry-run namespace that is not a drill's was admitted by \(confinementPolicy). "
                            + "Install deploy/admission.yaml (its policy holds service accounts named drctl, in any namespace); "
                            + "drctl does not drill with an account nothing but its own code holds to drill namespaces")
    }

    /// The API server as the recovery Cluster's pods reach it: the `kubernetes` Service's
    /// EndpointSlice, read when the drill starts, so their network rule names it and nothing else.
    func apiServerEndpoints() throws -> DrillIsolation.APIServer {
        guard let slice = try kube.get(apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", namespace: "default", name: "kubernetes") else {
            throw RecoveryError("EndpointSlice default/kubernetes not found: the recovery Cluster's network rule names the API server's endpoints")
        }
        let api = DrillIsolation.APIServer.from(endpointSlice: slice)
        guard !api.addresses.isEmpty, !api.ports.isEmpty else {
            throw RecoveryError("EndpointSlice default/kubernetes has no ready address and port: the recovery Cluster could not reach the API server")
        }
        return api
    }

    /// drctl's powers inside a scratch namespace come from binding the `drctl-drill` ClusterRole
    /// there, to itself (deploy/rbac.yaml grants nothing of it cluster-wide). An account that
    /// can already write there (an administrator's) binds nothing.
    func bindDrillRole(in ns: String, progress: (String) -> Void) throws {
        if try kube.canI("create", group: "networking.k8s.io", resource: "networkpolicies", namespace: ns) { return }
        let user = try kube.whoAmI()
        let parts = user.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let subject: [String: Any] = user.hasPrefix("system:serviceaccount:") && parts.count == 4
            ? ["kind": "ServiceAccount", "name": parts[3], "namespace": parts[2]]
            : ["kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user]
        _ = try kube.create(["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                             "metadata": ["name": Self.drillRole, "namespace": ns, "labels": DrillManifests.labels],
                             "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": Self.drillRole],
                             "subjects": [subject]])
        progress("\(ns): ClusterRole \(Self.drillRole) bound to \(user) in this namespace only")
    }

    /// The ClusterRole of deploy/rbac.yaml a drill binds in its scratch namespaces.
    public static let drillRole = "drctl-drill"

    /// The namespace each recovery Cluster is made in: the scratch namespace its own namespace
    /// is restored into, else the drill's first.
    func clusterPlacement(_ mappings: [DrillIsolation.Mapping], primary: String) -> [String: String] {
        var out: [String: String] = [:]
        for c in policy.cnpg { out[c.cluster.value] = mappings.first { $0.source == c.namespace }?.scratch ?? mappings.first?.scratch ?? primary }
        return out
    }

    /// The same plan a host drill makes, from the bucket alone: a target no backup and WAL can
    /// reach (a gap, the wrong range) fails here, named, before anything is created. Returns
    /// each cluster's PostgreSQL major version.
    @discardableResult
    func precheck(now: Date) throws -> [String: Int] {
        let reader = storage
        var majors: [String: Int] = [:]
        for c in policy.cnpg {
            let (scan, archive) = try BarmanScanner.scanArchive(reader, layout: BarmanLayout(root: store.prefixes.barman.value), server: c.serverName.value)
            do {
                let plan = try RestorePlanner.plan(server: c.serverName.value, scan: scan, archive: archive, target: target, now: now)
                if case .latest = target, !plan.warnings.isEmpty { throw PlanError(plan.warnings.joined(separator: "; ")) }
                majors[c.cluster.value] = plan.pgMajor
            } catch let e as PlanError {
                throw RecoveryError("\(c.cluster.value): \(e)")
            }
        }
        return majors
    }

    /// How the checks reach a recovered cluster: directly (psql to the `-rw` Service's address
    /// with the `<cluster>-superuser` password) when drctl can reach it and may read that
    /// Secret, else through check Jobs in the scratch namespace. Returns the session and how.
    func sqlSession(_ c: BackupPolicy.CNPGCluster, in ns: String, major: Int, deadline: Date, statements: [DrillChecks.Statement],
                    progress: (String) -> Void) throws -> (any SQLSession, String) {
        let name = c.cluster.value
        guard let svc = try kube.get(apiVersion: "v1", kind: "Service", namespace: ns, name: "\(name)-rw"),
              let spec = svc["spec"] as? [String: Any], let ip = spec["clusterIP"] as? String,
              let port = (spec["ports"] as? [[String: Any]])?.first?["port"] as? Int else {
            throw RecoveryError("\(name): the recovered Cluster has no -rw Service")
        }
        // The checks trust what answers there: the Service must be the one CNPG made for drctl's
        // Cluster (owned by it), not one restored from the backup under the same name.
        let cluster = try kube.get(apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", namespace: ns, name: name)
        let uid = (cluster?["metadata"] as? [String: Any])?["uid"] as? String
        let owners = (svc["metadata"] as? [String: Any])?["ownerReferences"] as? [[String: Any]] ?? []
        guard let uid, owners.contains(where: { $0["kind"] as? String == "Cluster" && $0["uid"] as? String == uid && $0["controller"] as? Bool == true }) else {
            throw RecoveryError("\(name): Service \(ns)/\(name)-rw is not the recovery Cluster's (it does not own it): something else poses as the database; not checking through it")
        }
        let secret = "\(name)-superuser"
        var why = "\(ip):\(port) is not reachable from here"
        if tcpReachable(ip, port: port, timeout: 2) {
            why = "drctl may not read Secret \(ns)/\(secret)"
            if try kube.canI("get", resource: "secrets", namespace: ns, name: secret) {
                why = "Secret \(ns)/\(secret) has no password"
                if let data = try kube.get(apiVersion: "v1", kind: "Secret", namespace: ns, name: secret)?["data"] as? [String: Any],
                   let b64 = data["password"] as? String, let pw = Data(base64Encoded: b64), let password = String(data: pw, encoding: .utf8) {
                    let direct = PsqlSession(psql: try Self.psqlBinaries().bin + "/psql", host: ip, port: port, user: "postgres", password: password)
                    do {
                        _ = try direct.query("select 1", database: "postgres")
                        progress("\(name): checks connect directly to \(name)-rw at \(ip):\(port)")
                        return (direct, "directly at \(ip):\(port)")
                    } catch {
                        why = "\(ip):\(port) does not answer as PostgreSQL from here (\(error))"
                    }
                }
            }
        }
        progress("\(name): \(why): the checks run as Jobs in \(ns)")
        let all = statements + [DrillChecks.Statement(cluster: name, database: "postgres", sql: DrillChecks.achievedSQL)]
        let jobs = try CheckJobs(kube: kube, namespace: ns, cluster: name, port: port, image: checkImage ?? DrillManifests.postgresImage(major: major),
                                 statements: all, deadline: deadline, progress: progress)
        return (jobs, "through Jobs in \(ns)")
    }

    /// Waits for the restored Deployments and StatefulSets to be available; the podsReady finding.
    func waitWorkloads(in namespaces: [String], deadline: Date, progress: (String) -> Void) throws -> (DrillEvidence.Check.Result, String) {
        var ready: [String] = []
        for ns in namespaces {
            for kind in ["Deployment", "StatefulSet"] {
                for o in try kube.list(apiVersion: "apps/v1", kind: kind, namespace: ns) {
                    guard let name = (o["metadata"] as? [String: Any])?["name"] as? String else { continue }
                    _ = try waitFor("apps/v1", kind, ns, name, deadline: deadline) { s in
                        let want = (o["spec"] as? [String: Any])?["replicas"] as? Int ?? 1
                        return (s[kind == "Deployment" ? "availableReplicas" : "readyReplicas"] as? Int ?? 0) >= want
                    }
                    ready.append("\(kind) \(name)")
                }
            }
        }
        let ns = namespaces.joined(separator: ", ")
        progress("available: \(ready.isEmpty ? "no Deployments or StatefulSets were restored" : ready.joined(separator: ", "))")
        return ready.isEmpty ? (.skipped, "no Deployments or StatefulSets were restored into \(ns)") : (.passed, "\(ready.count) available: \(ready.joined(separator: ", "))")
    }

    /// The object store credentials, copied from drctl's namespace into `ns`.
    func copyCredentials(into ns: String) throws {
        guard !policy.cnpg.isEmpty else { return }
        guard let secret = try kube.get(apiVersion: "v1", kind: "Secret", namespace: credentialsNamespace, name: store.credentials.secretName) else {
            throw RecoveryError("Secret \(credentialsNamespace)/\(store.credentials.secretName) not found: the recovery Cluster needs the object store credentials")
        }
        do {
            _ = try kube.create(["apiVersion": "v1", "kind": "Secret", "type": secret["type"] ?? "Opaque",
                                 "metadata": ["name": DrillManifests.credentialsSecret, "namespace": ns,
                                              "labels": DrillManifests.labels],
                                 "data": secret["data"] ?? [:]])
        } catch let e as KubeError where e.isConflict {
            // `restore --force` into a namespace an earlier restore copied them into: kept.
        }
    }

    /// The newest completed backup of the policy's schedules at or before the target, with the
    /// namespaces it holds (nil when it has no resource list); nil without Velero in the policy.
    func veleroBackup(now: Date) throws -> (name: String, namespaces: Set<String>?)? {
        guard let v = policy.velero else { return nil }
        let names = Set(v.schedules.map { VeleroLayout.scheduleName(policy: policy.name.value, tier: $0.tier.value) })
        let cutoff = target.date ?? now
        let reader = storage
        let layout = VeleroLayout(root: store.prefixes.velero.value)
        let entries = try VeleroScanner.scan(reader, layout: layout)
        guard let backup = VeleroDrillCheck.restorePoint(entries, schedules: names, at: cutoff) else {
            throw RecoveryError("no completed Velero backup of \(names.sorted().joined(separator: ", ")) at or before \(RFC3339.format(cutoff))")
        }
        let namespaces: Set<String>?
        do {
            let list = try VeleroDrillCheck.resourceList(reader: reader, key: layout.sideFileKey(backup: backup.name, suffix: "resource-list.json.gz"))
            namespaces = VeleroNamespaces.inResourceList(list.mapValues(Array.init))
        } catch StorageError.notFound {
            namespaces = nil
        }
        return (backup.name, namespaces)
    }

    /// Creates the Velero Restore (named `name`) of `backup` with `mappings`, refusing first any
    /// mapping that could write outside the targets.
    func startVeleroRestore(_ backup: String, name: String, mappings: [DrillIsolation.Mapping], modifiers: String?, progress: (String) -> Void) throws -> String {
        try DrillIsolation.validate(mappings)
        return try createRestore(backup, name: name, mappings: mappings, modifiers: modifiers, labels: DrillManifests.labels, progress: progress)
    }

    func createRestore(_ backup: String, name: String, mappings: [DrillIsolation.Mapping], modifiers: String?, labels: [String: String],
                       progress: (String) -> Void) throws -> String {
        progress("Velero restore of \(backup): " + mappings.map { "\($0.source) -> \($0.scratch)" }.joined(separator: ", "))
        _ = try kube.create(Self.plain(DrillIsolation.veleroRestore(name: name, backup: backup, mappings: mappings, veleroNamespace: veleroNamespace,
                                                                    modifiers: modifiers, labels: labels)))
        return name
    }

    func createClusters(_ placement: [String: String], progress: (String) -> Void) throws {
        for c in policy.cnpg {
            guard let ns = placement[c.cluster.value] else { continue }
            for o in DrillManifests.recoveryCluster(policy: policy, cluster: c, store: store, namespace: ns, targetTime: target.date.map(TargetTime.postgres),
                                                             backupID: { if case .backup(let id) = target { return id } else { return nil } }()) {
                _ = try kube.create(Self.plain(o))
            }
            progress("\(c.cluster.value): recovery Cluster created in \(ns)")
        }
    }

    func waitVeleroRestore(_ name: String, deadline: Date) throws -> [String: Any] {
        try waitFor("velero.io/v1", "Restore", veleroNamespace, name, deadline: deadline) { s in
            let p = s["phase"] as? String ?? ""
            if Self.restoreSucceededPhases.contains(p) { return true }
            if Self.restoreFailedPhases.contains(p) {
                throw RecoveryError("Velero restore \(name) \(p): \(s["failureReason"] as? String ?? (s["validationErrors"] as? [String] ?? []).joined(separator: "; "))")
            }
            return false
        }
    }

    func waitCluster(_ c: BackupPolicy.CNPGCluster, in ns: String, deadline: Date) throws -> [String: Any] {
        try waitFor("postgresql.cnpg.io/v1", "Cluster", ns, c.cluster.value, deadline: deadline) { s in
            let phase = s["phase"] as? String ?? ""
            if (s["readyInstances"] as? Int ?? 0) >= 1 && phase.contains("healthy") { return true }
            if phase.contains("cannot proceed") || phase.contains("failed") {
                throw RecoveryError("\(c.cluster.value): recovery Cluster \(phase): \(s["phaseReason"] as? String ?? "")")
            }
            return false
        }
    }

    /// `drctl restore WORKLOAD --namespace NEW`: the drill's restore into a namespace that is kept
    /// (no checks, no teardown, not sealed: this is the real way back). A drill's scratch
    /// namespace is always refused (its drill or the janitor would delete the restore); any
    /// other existing namespace unless `force`.
    public func restore(into ns: String, force: Bool, timeout: TimeInterval, progress: @escaping (String) -> Void) throws -> [String] {
        let now = Date()
        try precheck(now: now)
        let backup = try veleroBackup(now: now)
        let sources = try backup.map { try DrillIsolation.sourceNamespaces(policy: policy.namespaces.map(\.value), backup: $0.namespaces) } ?? []
        if sources.count > 1 {
            throw RecoveryError("\(policy.name.value)'s backup holds \(sources.count) namespaces (\(sources.prefix(5).joined(separator: ", "))\(sources.count > 5 ? ", …" : "")); --namespace restores one: they would collide on same-named objects")
        }
        if let existing = try kube.get(apiVersion: "v1", kind: "Namespace", name: ns) {
            let meta = existing["metadata"] as? [String: Any] ?? [:]
            let labels = meta["labels"] as? [String: String] ?? [:]
            if labels[DrillManifests.label] != nil || ns.hasPrefix(DrillManifests.namePrefix) {
                throw RecoveryError("namespace \(ns) is a drill's scratch namespace: its drill or the janitor deletes it, and the restore with it; restore into a new namespace")
            }
            if !force {
                throw RecoveryError("namespace \(ns) exists; drctl restores into a new namespace, or into this one with --force (existing objects are left as they are)")
            }
        } else {
            if ns.hasPrefix(DrillManifests.namePrefix) {
                throw RecoveryError("\(ns) starts with \(DrillManifests.namePrefix), which marks drill namespaces: choose another name")
            }
            _ = try kube.create(["apiVersion": "v1", "kind": "Namespace",
                                 "metadata": ["name": ns, "labels": ["app.kubernetes.io/managed-by": "drctl"],
                                              "annotations": ["drctl.dev/restored-from": policy.name.value, "drctl.dev/restore-target": target.description]]])
            progress("namespace \(ns) created")
        }
        try copyCredentials(into: ns)
        let deadline = now.addingTimeInterval(timeout)
        var restoreName: String?
        if let backup {
            let mappings = sources.map { DrillIsolation.Mapping(source: $0, scratch: ns) }
            // The same exclusions as a drill (drctl's recovery Cluster is the database), no seal.
            // Not a drill's: without the drill label.
            let name = String("\(ns)-\(ScratchDirectory.stamp(now).lowercased().filter { $0.isLetter || $0.isNumber })".prefix(63))
            restoreName = try createRestore(backup.name, name: name, mappings: mappings, modifiers: nil,
                                            labels: ["app.kubernetes.io/managed-by": "drctl"], progress: progress)
        }
        var placement: [String: String] = [:]
        for c in policy.cnpg { placement[c.cluster.value] = ns }
        try createClusters(placement, progress: progress)
        var lines: [String] = []
        if let restoreName {
            let s = try waitVeleroRestore(restoreName, deadline: deadline)
            lines.append("Velero restore \(restoreName): \(s["phase"] as? String ?? "?"), \((s["progress"] as? [String: Any])?["itemsRestored"] as? Int ?? 0) items restored")
        }
        for c in policy.cnpg {
            let s = try waitCluster(c, in: ns, deadline: deadline)
            lines.append("Cluster \(ns)/\(c.cluster.value): \(s["phase"] as? String ?? "?"); its service is \(c.cluster.value)-rw.\(ns).svc")
        }
        return lines
    }

    /// Watches an object until `done` accepts its status (or throws), by the deadline.
    func waitFor(_ apiVersion: String, _ kind: String, _ ns: String, _ name: String, deadline: Date,
                 _ done: ([String: Any]) throws -> Bool) throws -> [String: Any] {
        do {
            let o = try kube.waitFor(apiVersion: apiVersion, kind: kind, namespace: ns, name: name, deadline: deadline) { o in
                if Cleanup.shared.isAborting { throw RecoveryError("interrupted") }
                guard let s = o?["status"] as? [String: Any] else { return false }
                return try done(s)
            }
            return o?["status"] as? [String: Any] ?? [:]
        } catch is KubeClient.DeadlineExceeded {
            throw RecoveryError("\(kind) \(ns)/\(name) not ready within the RTO objective \(TimeSpan.humanize(policy.rto.value.seconds))")
        }
    }

    /// Watches a namespace until it is gone.
    func waitGone(_ ns: String, deadline: Date) throws -> Bool {
        do {
            _ = try kube.waitFor(apiVersion: "v1", kind: "Namespace", namespace: nil, name: ns, deadline: deadline) { $0 == nil }
        } catch is KubeClient.DeadlineExceeded {
            throw RecoveryError("namespace \(ns) still exists after \(TimeSpan.humanize(Int(Self.namespaceDeletionGrace)))")
        }
        return true
    }

    /// psql of any installed major version (direct checks only need a client).
    static func psqlBinaries() throws -> PostgresBinaries {
        for major in (10...20).reversed() where FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\(major)/bin/psql") {
            return PostgresBinaries(bin: "/usr/lib/postgresql/\(major)/bin", major: major)
        }
        throw RecoveryError("psql not found (install postgresql-client)")
    }

    static func plain(_ o: [String: any Sendable]) -> [String: Any] { o }
}

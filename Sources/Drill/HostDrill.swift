import Catalog
import Foundation
import Layout
import Support
import Storage
import Policy

/// A restore drill of one workload on this host: every database of the policy restored to the
/// same target into a scratch directory, the policy's checks run against them, the evidence
/// recorded, and everything removed again.
public struct HostDrill {
    public var policy: BackupPolicy
    public var store: ObjectStorePolicy
    public var access: StoreAccess
    public var target: RecoveryTarget
    public var options: HostRestoreOptions
    public var keep = false
    /// Earlier drills' rates: the RTO this drill is predicted to take, recorded beside what it took.
    public var rates: [RTOModel.Sample] = []

    public init(policy: BackupPolicy, store: ObjectStorePolicy, access: StoreAccess, target: RecoveryTarget, options: HostRestoreOptions) {
        self.policy = policy
        self.store = store
        self.access = access
        self.target = target
        self.options = options
    }

    /// Runs the drill. Failures (a plan refused, a recovery that fails, a check that fails)
    /// are recorded in the evidence, not thrown; only a failure to record evidence throws.
    public func run(progress: @escaping (String) -> Void, transfer: TransferProgress? = nil) -> DrillEvidence {
        let started = Date()
        let workload = policy.name.value
        let id = "\(ScratchDirectory.stamp(started))-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        var phases: [String: Double] = [:]
        var databases: [DrillEvidence.Database] = []
        var checks: [DrillEvidence.Check] = []
        var failure: String?
        var restores: [HostRestore] = []
        var servers: [String: RecoveryServer] = [:]
        var bytes: Int64 = 0
        var verifiedAt = Date()
        var prediction: RTOModel.Prediction?
        func add(_ phase: String, _ s: Double) { phases[phase, default: 0] += s }

        progress("drill \(id) of \(workload): target \(target)")
        do {
            if policy.cnpg.isEmpty && policy.velero == nil {
                throw RecoveryError("the policy has neither cnpg nor velero backups to restore")
            }
            let reader = access.storage
            let layout = BarmanLayout(root: store.prefixes.barman.value)
            // Plan every database first: a target nothing can reach fails before any download.
            var t = Date()
            var plans: [(BackupPolicy.CNPGCluster, RestorePlan)] = []
            for c in policy.cnpg {
                let (scan, archive) = try BarmanScanner.scanArchive(reader, layout: layout, server: c.serverName.value)
                do {
                    plans.append((c, try RestorePlanner.plan(server: c.serverName.value, scan: scan, archive: archive, target: target, now: started)))
                } catch let e as PlanError {
                    throw RecoveryError("\(c.cluster.value): \(e)")
                }
            }
            add("plan", Date().timeIntervalSince(t))
            prediction = RTOModel.predict(rates, baseBytes: plans.reduce(0) { $0 + $1.1.baseBytes },
                                          walBytes: plans.reduce(0) { $0 + Int64($1.1.walNeeded) * Int64(min($1.1.backup.segmentSize, 1 << 30)) })
            if let p = prediction { progress("predicted RTO \(String(format: "%.1f", p.seconds))s (\(String(format: "%.1f", p.lowSeconds))s to \(String(format: "%.1f", p.highSeconds))s) from \(p.drills.count) earlier drill(s)") }
            if case .latest = target, let (c, plan) = plans.first(where: { !$0.1.warnings.isEmpty }) {
                // A drill of the newest point must reach it: archived WAL that recovery cannot
                // reach is lost data, even if what comes before it restores.
                throw RecoveryError("\(c.cluster.value): \(plan.warnings.joined(separator: "; "))")
            }
            for (c, plan) in plans {
                progress("\(c.cluster.value): base backup \(plan.backup.backupID) (\(formatBytes(plan.baseBytes))), WAL \(plan.walRange)")
                for w in plan.warnings { progress("\(c.cluster.value): warning: \(w)") }
                let source = BarmanSource(access: access, layout: layout, server: c.serverName.value)
                var o = options
                o.kind = "drill"
                o.preloadLibraries = policy.drill?.preloadLibraries ?? []
                let restore = HostRestore(plan: plan, source: source, options: o, progress: { progress("\(c.cluster.value): \($0)") }, transfer: transfer)
                restores.append(restore)
                do {
                    let outcome = try restore.run()
                    servers[c.cluster.value] = restore.server
                    for (k, v) in outcome.phases { add(k, v) }
                    bytes += outcome.baseBytes + outcome.walBytes
                    databases.append(.init(cluster: c.cluster.value, server: c.serverName.value, backupID: outcome.backupID, target: outcome.target,
                                           achieved: outcome.achieved, stop: outcome.stop, timeline: outcome.timeline,
                                           walSegments: outcome.walSegmentsRestored, baseBytes: outcome.baseBytes, walBytes: outcome.walBytes,
                                           setAside: outcome.setAside.isEmpty ? nil : outcome.setAside))
                    databases[databases.count - 1].proof = outcome.proof
                    databases[databases.count - 1].walSegmentSize = plan.backup.segmentSize
                    databases[databases.count - 1].replaySettings = outcome.replaySettings
                } catch {
                    throw RecoveryError("\(c.cluster.value): \(error)")
                }
            }
            t = Date()
            let reference = target.date ?? started
            checks = DrillChecks.run(policy.drill?.checks ?? [], servers: servers, rpo: policy.rpo.value.seconds, reference: reference, progress: progress)
            checks += HeartbeatCheck.runAll(policy, session: { servers[$0]?.reader }, reference: reference, databases: &databases, progress: progress)
            if policy.velero != nil {
                checks += VeleroDrillCheck.run(policy: policy, store: store, storage: access.storage, target: target, now: started,
                                               scratchBase: options.scratchBase, owner: options.owner, progress: progress)
            }
            add("checks", Date().timeIntervalSince(t))
            verifiedAt = Date()
            if let bad = checks.first(where: { $0.result == .failed }) {
                failure = "check failed: \(bad.name): \(bad.detail)"
            }
        } catch {
            verifiedAt = Date()
            failure = "\(error)"
        }
        for r in restores { r.finish(success: failure == nil, keepScratch: keep) }
        let reference = target.date ?? started
        let rpo = DrillEvidence.rpo(databases, reference: reference)
        var evidence = DrillEvidence(id: id, workload: workload, mode: "host", host: ProcessInfo.processInfo.hostName, startedAt: started,
                             finishedAt: Date(), target: target.description, targetTime: target.date, result: failure == nil ? .passed : .failed,
                             error: failure, databases: databases, checks: checks, rtoSeconds: verifiedAt.timeIntervalSince(started),
                             rtoObjectiveSeconds: policy.rto.value.seconds, rpoSeconds: rpo, rpoObjectiveSeconds: policy.rpo.value.seconds,
                             phases: phases, bytesFetched: bytes)
        evidence.predictedRTO = prediction
        return evidence
    }

    /// Stores the evidence in the bucket under drctl's prefix, sealed with drctl's record key.
    public static func upload(_ e: DrillEvidence, store: ObjectStorePolicy, to storage: any StorageWriter) throws -> String {
        let (key, bytes) = try DrillEvidence.sealed(e, drctlPrefix: store.prefixes.drctl.value)
        try storage.put(key, bytes: bytes, contentType: "application/json")
        return key
    }
}

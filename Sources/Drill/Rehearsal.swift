import Catalog
import Foundation
import Policy
import Support

/// A whole-site rehearsal: every workload brought back from one store (a copy, the primary
/// gone), in the policies' order (databases first, `dependsOn` respected), up to `parallel` at
/// once, each drilled as `drctl verify` drills it. What it measures is when each workload was
/// healthy again, counted from the rehearsal's start: the site's RTO and the chain that decided it.
public struct Rehearsal: @unchecked Sendable {
    /// The workloads, already pointed at the store they come back from.
    public var policies: [BackupPolicy]
    public var set: PolicySet
    public var from: String
    public var runner: DrillRunner
    public var parallel: Int
    public var siteRTO: Int
    public var catalog: CatalogStore?

    public init(policies: [BackupPolicy], set: PolicySet, from: String, runner: DrillRunner, parallel: Int, siteRTO: Int, catalog: CatalogStore?) {
        self.policies = policies
        self.set = set
        self.from = from
        self.runner = runner
        self.parallel = max(1, parallel)
        self.siteRTO = siteRTO
        self.catalog = catalog
    }

    /// Runs the rehearsal. A workload that fails (its store is not on the copy, its restore or a
    /// check fails) is recorded and the others go on; nothing here throws.
    public func run(log: @escaping @Sendable (String) -> Void) -> RehearsalEvidence {
        let started = Date()
        let id = "\(RFC3339.formatBasic(started))-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        let state = SiteState()
        let names = Set(policies.map(\.name.value))
        var pending = policies
        log("rehearsal \(id): \(policies.count) workloads from ObjectStore \(from), \(parallel) at a time")
        while true {
            let (finished, running, lastEnded, generation) = state.snapshot()
            if pending.isEmpty && running == 0 { break }
            let ready = SiteOrder.ready(pending: pending.map { ($0.name.value, $0.dependsOn.map(\.value), !$0.cnpg.isEmpty) },
                                        finished: Set(finished.keys), all: names)
            if let name = ready.first, running < parallel, let i = pending.firstIndex(where: { $0.name.value == name }) {
                let p = pending.remove(at: i)
                // What it waited for: the dependency that ended last, else whatever freed its slot.
                let deps = p.dependsOn.map(\.value).filter { names.contains($0) }
                let waited = deps.max { (finished[$0] ?? 0) < (finished[$1] ?? 0) } ?? lastEnded
                let failedDeps = deps.filter { state.failed($0) }
                state.begin()
                let startedAfter = Date().timeIntervalSince(started)
                log("\(p.name.value): restoring (after \(String(format: "%.1f", startedAfter))s\(waited.map { ", waited for \($0)" } ?? ""))")
                Thread.detachNewThread { [self] in
                    let w = drill(p, startedAfter: startedAfter, waitedFor: waited, failedDependencies: failedDeps, since: started, log: log)
                    state.end(w)
                }
                continue
            }
            if running == 0 {
                // Nothing runs and nothing can start: what is left waits for itself (lint refuses such policies).
                for p in pending {
                    state.end(.init(workload: p.name.value, result: .failed, error: "waits for \(p.dependsOn.map(\.value).joined(separator: ", ")), which never came back",
                                    drillID: nil, startedAfter: Date().timeIntervalSince(started), healthyAfter: Date().timeIntervalSince(started),
                                    rtoSeconds: 0, rtoObjectiveSeconds: p.rto.value.seconds, rpoSeconds: nil, rpoObjectiveSeconds: p.rpo.value.seconds,
                                    phases: [:], waitedFor: nil, dependsOn: p.dependsOn.map(\.value)), counted: false)
                }
                break
            }
            state.waitForChange(since: generation)
        }
        let done = state.results()
        let workloads = policies.compactMap { p in done.first { $0.workload == p.name.value } }
        return RehearsalEvidence(id: id, from: from, mode: runner.mode.rawValue, host: ProcessInfo.processInfo.hostName, startedAt: started,
                                 finishedAt: Date(), siteRTOObjectiveSeconds: siteRTO, parallel: parallel, workloads: workloads)
    }

    /// Keeps the record in the catalog (if any) and, sealed, in the store the site came back
    /// from; false when it could not be stored there.
    public func record(_ e: RehearsalEvidence, log: (String) -> Void) -> Bool {
        do { try catalog?.recordRehearsal(e) } catch { log("could not record the rehearsal in the catalog: \(error)") }
        guard runner.upload else { return true }
        do {
            guard let store = set.objectStore(named: from) else { throw LocalError("no ObjectStore named '\(from)'") }
            let access = try runner.open(store)
            let (key, bytes) = try RehearsalEvidence.sealed(e, drctlPrefix: store.prefixes.drctl.value)
            try access.storage.put(key, bytes: bytes, contentType: "application/json")
            log("rehearsal stored at \(access.storage.location)/\(key)")
            return true
        } catch {
            log("could not store the rehearsal in ObjectStore \(from): \(error)")
            return false
        }
    }

    func drill(_ p: BackupPolicy, startedAfter: Double, waitedFor: String?, failedDependencies: [String], since started: Date,
               log: @escaping @Sendable (String) -> Void) -> RehearsalEvidence.Workload {
        let name = p.name.value
        func line(_ s: String) { log("\(name): \(s)") }
        var w = RehearsalEvidence.Workload(workload: name, result: .failed, error: nil, drillID: nil, startedAfter: startedAfter, healthyAfter: startedAfter,
                                           rtoSeconds: 0, rtoObjectiveSeconds: p.rto.value.seconds, rpoSeconds: nil,
                                           rpoObjectiveSeconds: p.rpo.value.seconds, phases: [:], waitedFor: waitedFor, dependsOn: p.dependsOn.map(\.value))
        do {
            guard let store = set.objectStore(named: p.objectStore.value) else {
                throw LocalError("no ObjectStore named '\(p.objectStore.value)'")
            }
            // A drill of the copy is the copy's: its evidence goes there, never into the catalog,
            // where it would stand for the workload's own drills (status, prediction).
            let (e, _) = try runner.run(p, store: store, target: .latest, catalog: nil, log: line)
            w.result = e.result
            w.error = e.error
            w.drillID = e.id
            w.rtoSeconds = e.rtoSeconds
            w.rpoSeconds = e.rpoSeconds
            w.phases = e.phases
            // Healthy when its data was verified, not when its evidence was stored and its scratch removed.
            w.healthyAfter = e.startedAt.timeIntervalSince(started) + e.rtoSeconds
        } catch {
            w.error = "\(error)"
        }
        if !failedDependencies.isEmpty && w.result == .passed {
            // Its data came back, but what it needs did not: the site does not have it.
            w.result = .failed
            w.error = "restored, but \(failedDependencies.joined(separator: ", ")) it depends on did not come back"
        }
        if w.drillID == nil { w.healthyAfter = Date().timeIntervalSince(started) }
        line("\(w.result == .passed ? "healthy" : "FAILED") after \(String(format: "%.1f", w.healthyAfter))s\(w.error.map { ": \($0)" } ?? "")")
        return w
    }
}

/// What the rehearsal's threads share: who finished when, how many run, and a condition to wait on.
private final class SiteState: @unchecked Sendable {
    private let cond = NSCondition()
    private var finished: [String: Double] = [:]
    private var failedNames = Set<String>()
    private var done: [RehearsalEvidence.Workload] = []
    private var running = 0
    private var lastEnded: String?
    /// Bumped at every end: a wait that started after the snapshot it was decided on misses none.
    private var generation = 0

    func snapshot() -> ([String: Double], Int, String?, Int) { cond.withLock { (finished, running, lastEnded, generation) } }
    func failed(_ name: String) -> Bool { cond.withLock { failedNames.contains(name) } }
    func results() -> [RehearsalEvidence.Workload] { cond.withLock { done } }
    func begin() { cond.withLock { running += 1 } }

    func end(_ w: RehearsalEvidence.Workload, counted: Bool = true) {
        cond.withLock {
            if counted { running -= 1 }
            finished[w.workload] = w.healthyAfter
            if w.result != .passed { failedNames.insert(w.workload) }
            lastEnded = w.workload
            generation += 1
            done.append(w)
            cond.broadcast()
        }
    }

    func waitForChange(since seen: Int) {
        cond.lock()
        defer { cond.unlock() }
        while generation == seen { cond.wait() }
    }
}

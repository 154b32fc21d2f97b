import Foundation
import Layout
import Policy
import Replication
import Storage
import Support

/// A store's copies as the policy names them: which prefixes go where, and where each copy
/// keeps its record.
public enum StoreCopies {
    /// Each copied kind from the source's prefix to the target's; drctl's own copy records stay.
    public static func routes(_ source: ObjectStorePolicy, _ copy: ObjectStorePolicy.Copy, _ target: ObjectStorePolicy) -> [CopyRoute] {
        copy.kinds.map { k in CopyRoute(from: source.prefix(k), to: target.prefix(k), skip: k == .drctl ? [DrctlLayout.copiesFolder, DrctlLayout.changedFolder] : []) }
    }

    /// The key of the record of `source`'s copy in `target`.
    public static func stateKey(_ source: ObjectStorePolicy, _ target: ObjectStorePolicy) -> String {
        DrctlLayout(root: target.prefixes.drctl.value).copyStateKey(source: source.name.value)
    }

    /// Each copy of `store` read against the store itself: its lag and last success. A copy that
    /// cannot be read says so (the 3-2-1 promise is then unproven), nothing is thrown.
    ///
    /// `servers`: the barman servers whose newest recoverable point on each copy is wanted (the
    /// copy's own: the end of the unbroken WAL run from its newest restorable backup there); a
    /// copy encrypted with age is not read for it (the identity is not the service's to hold).
    public static func inspect(_ store: ObjectStorePolicy, in set: PolicySet, source: any StorageReader, open: CopyOpener, now: Date,
                               servers: [String] = []) -> [WorkloadStatus.Copy] {
        store.copies.compactMap { copy -> WorkloadStatus.Copy? in
            guard let target = set.objectStore(named: copy.to.value) else { return nil }
            var out = WorkloadStatus.Copy(store: target.name.value, maxLagSeconds: copy.maxLag?.value.seconds)
            do {
                let storage = try open(target)
                let inspection = try CopyInspector.inspect(source: source, target: storage, stateKey: stateKey(store, target),
                                                           routes: routes(store, copy, target), now: now)
                let (plan, state) = (inspection.plan, inspection.state)
                out.lagSeconds = plan.lag(now: now)
                out.pending = plan.copy.count
                let changed = (plan.changedAtSource + plan.changedBefore).map(\.sourceKey).sorted()
                out.changedAtSource = changed.isEmpty ? nil : changed
                if let how = inspection.record, !how.isAuthentic { out.recordUnauthenticated = true }
                out.lastSuccess = state.lastSuccess
                if copy.kinds.contains(.barman) && copy.recipients.isEmpty && !servers.isEmpty {
                    let layout = BarmanLayout(root: target.prefixes.barman.value)
                    var points: [String: Date] = [:]
                    for server in servers {
                        let scan = try BarmanScanner.scan(storage, layout: layout, server: server)
                        if let t = scan.backups.filter(\.restorable).compactMap({ $0.walChainEndTime ?? $0.endTime }).max() { points[server] = t }
                    }
                    out.serverPoints = points
                }
            } catch {
                out.error = KnownSecrets.shared.redactor.redact("\(error)")
            }
            return out
        }
    }

    /// What a copy's state does to the workload: AT RISK when it lags past its maxLag or cannot be read.
    public static func judge(_ copies: [WorkloadStatus.Copy], servers: [String] = [], into status: inout WorkloadStatus) {
        // Each copy's newest recoverable point for this workload: its oldest database's.
        status.copies = copies.map { c in
            var c = c
            if let points = c.serverPoints, !servers.isEmpty {
                let mine = servers.map { points[$0] }
                c.newestRecoverablePoint = mine.contains(where: { $0 == nil }) ? nil : mine.compactMap { $0 }.min()
            }
            c.serverPoints = nil
            return c
        }
        for c in copies {
            if c.recordUnauthenticated == true {
                status.reasons.append("the record of the copy to \(c.store) is not sealed with drctl's record key: it vouches for nothing (every object is compared afresh): see runbook DrctlUnauthenticatedRecord")
            }
            if let changed = c.changedAtSource, !changed.isEmpty {
                status.status = max(status.status, .broken)
                status.reasons.append("\(changed.count) backup object(s) changed at the source after they were copied to \(c.store) (written once by their tools: an attack or a fault), e.g. \(changed[0]); the copy keeps the originals: see runbook DrctlBackupObjectChanged")
            }
            if let e = c.error {
                status.status = max(status.status, .atRisk)
                status.reasons.append("copy to \(c.store) could not be read: \(e)")
            } else if let lag = c.lagSeconds, let max = c.maxLagSeconds, lag > Double(max) {
                status.status = Swift.max(status.status, .atRisk)
                status.reasons.append("copy to \(c.store) is \(TimeSpan.humanize(Int(lag))) behind (maxLag \(TimeSpan.humanize(max)); \(c.pending ?? 0) objects to copy): run drctl copy")
            }
        }
    }
}

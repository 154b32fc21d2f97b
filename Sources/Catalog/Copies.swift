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
        copy.kinds.map { k in CopyRoute(from: source.prefix(k), to: target.prefix(k), skip: k == .drctl ? [DrctlLayout.copiesFolder] : []) }
    }

    /// The key of the record of `source`'s copy in `target`.
    public static func stateKey(_ source: ObjectStorePolicy, _ target: ObjectStorePolicy) -> String {
        DrctlLayout(root: target.prefixes.drctl.value).copyStateKey(source: source.name.value)
    }

    /// Each copy of `store` read against the store itself: its lag and last success. A copy that
    /// cannot be read says so (the 3-2-1 promise is then unproven), nothing is thrown.
    public static func inspect(_ store: ObjectStorePolicy, in set: PolicySet, source: any StorageReader, open: CopyOpener, now: Date) -> [WorkloadStatus.Copy] {
        store.copies.compactMap { copy -> WorkloadStatus.Copy? in
            guard let target = set.objectStore(named: copy.to.value) else { return nil }
            var out = WorkloadStatus.Copy(store: target.name.value, maxLagSeconds: copy.maxLag?.value.seconds)
            do {
                let (plan, state, _) = try CopyInspector.plan(source: source, target: try open(target), stateKey: stateKey(store, target),
                                                              routes: routes(store, copy, target), now: now)
                out.lagSeconds = plan.lag(now: now)
                out.pending = plan.copy.count
                out.lastSuccess = state.lastSuccess
            } catch {
                out.error = KnownSecrets.shared.redactor.redact("\(error)")
            }
            return out
        }
    }

    /// What a copy's state does to the workload: AT RISK when it lags past its maxLag or cannot be read.
    public static func judge(_ copies: [WorkloadStatus.Copy], into status: inout WorkloadStatus) {
        status.copies = copies
        for c in copies {
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

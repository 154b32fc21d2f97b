import Catalog
import Foundation
import Policy

extension UptimeReport {
    /// The report of `set`'s workloads from `since` to `now`: the RPO history and the drills
    /// the catalog recorded, with `statuses` (the current evaluation) for the status table.
    public static func from(catalog: CatalogStore, set: PolicySet, statuses: [WorkloadStatus], since: Date, now: Date) throws -> UptimeReport {
        let objectives = set.backupPolicies.map { Objectives(workload: $0.name.value, rpoSeconds: $0.rpo.value.seconds, rtoSeconds: $0.rto.value.seconds) }
        return build(objectives: objectives, samples: try catalog.rpoHistory(since: since), drills: try catalog.drills(since: since),
                     statuses: statuses, since: since, now: now, rehearsals: try catalog.rehearsals(since: since))
    }
}

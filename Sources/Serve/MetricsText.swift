import AlertPath
import Catalog
import Foundation

/// The Prometheus text exposition (format 0.0.4) of a snapshot: the metrics the rendered
/// PrometheusRule reads (README, "Metrics"). Names and labels are stable.
public enum MetricsText {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Counters the service itself keeps (drills run since it started), beside the snapshot.
    public struct Counters: Sendable {
        public var drillRuns: [String: [String: Int]] = [:]   // workload -> result -> count
        public var jobFailures: [String: Int] = [:]            // job -> count
        public init() {}
    }

    /// This replica's part in a replicated `drctl serve` (nil: it runs alone).
    public struct Role: Sendable, Equatable {
        public var replica: String
        public var leader: Bool
        /// Whether it exports the workload, drill, copy and alert families: the leader, and a
        /// follower while no other replica holds a valid lease (the alerts must not go blind).
        public var exportsWork: Bool
        public init(replica: String, leader: Bool, exportsWork: Bool? = nil) {
            self.replica = replica; self.leader = leader; self.exportsWork = exportsWork ?? leader
        }
    }

    /// `now`: the measured RPO is the age of the newest recoverable point at scrape time, so it
    /// keeps growing between catalog syncs as a real loss would. A follower (`role.leader`
    /// false) leaves out the workload, drill, copy and job families: every replica reads the
    /// same bucket, and the alerts on them would fire once per replica. Its own catalog syncs
    /// and the store's reachability it reports as every replica does. While no replica holds a
    /// valid lease, every replica exports them all.
    public static func render(_ s: Snapshot, counters: Counters = Counters(), now: Date = Date(), role: Role? = nil) -> String {
        var out = ""
        out.reserveCapacity(256 + s.workloads.count * 1500)
        func family(_ name: String, _ type: String, _ help: String, _ samples: [([(String, String)], Double)]) {
            guard !samples.isEmpty else { return }
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, value) in samples {
                out += name
                if !labels.isEmpty { out += "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}" }
                out += " " + format(value) + "\n"
            }
        }
        if let role {
            family("drctl_leader", "gauge", "1 if this replica holds the lease and runs the scheduled work, else 0.",
                   [([("replica", role.replica)], role.leader ? 1 : 0)])
        }
        let follower = role.map { !$0.exportsWork } ?? false
        let ws = follower ? [] : s.workloads.sorted { $0.status.workload < $1.status.workload }
        func per(_ value: (Snapshot.Workload) -> Double?) -> [([(String, String)], Double)] {
            ws.compactMap { w in value(w).map { ([("workload", w.status.workload)], $0) } }
        }
        func sources(_ kind: String?, _ value: (WorkloadStatus.Source) -> Double?) -> [([(String, String)], Double)] {
            ws.flatMap { w in
                w.status.sources.filter { kind == nil || $0.kind == kind }.compactMap { src in
                    value(src).map { v -> ([(String, String)], Double) in
                        kind == nil ? ([("workload", w.status.workload), ("kind", src.kind), ("source", src.source)], v)
                                    : ([("workload", w.status.workload), ("cluster", src.source)], v)
                    }
                }
            }
        }
        family("drctl_backup_last_success_timestamp_seconds", "gauge", "Completion time of the newest successful backup in the bucket.",
               sources(nil) { $0.lastSuccess.map(\.timeIntervalSince1970) })
        family("drctl_backup_last_failure_timestamp_seconds", "gauge", "Time of the newest failed backup in the bucket.",
               sources(nil) { $0.lastFailure.map(\.timeIntervalSince1970) })
        family("drctl_wal_last_archived_timestamp_seconds", "gauge", "Time the newest WAL segment reached the bucket.",
               sources("cnpg") { $0.walLastArchived.map(\.timeIntervalSince1970) })
        family("drctl_wal_gaps", "gauge", "Missing WAL segment ranges after the newest usable base backup.",
               sources("cnpg") { $0.walGaps.map(Double.init) })
        family("drctl_retention_overdue_backups", "gauge", "Backups past the policy's retention still in the bucket (the retention report).",
               sources(nil) { $0.retentionOverdue.map(Double.init) })
        family("drctl_newest_recoverable_point_timestamp_seconds", "gauge", "The newest point the workload can be restored to.",
               per { $0.status.newestRecoverablePoint.map(\.timeIntervalSince1970) })
        family("drctl_rpo_seconds", "gauge", "Measured RPO: data a restore now would lose (now minus the newest recoverable point).",
               per { w in w.status.newestRecoverablePoint.map { max(0, now.timeIntervalSince($0).rounded()) } ?? w.status.rpoSeconds.map(Double.init) })
        family("drctl_rpo_objective_seconds", "gauge", "The policy's RPO objective.", per { Double($0.status.rpoObjectiveSeconds) })
        family("drctl_drill_last_run_timestamp_seconds", "gauge", "Start of the newest restore drill.",
               per { $0.status.lastDrill.map { $0.at.timeIntervalSince1970 } })
        family("drctl_drill_last_success", "gauge", "1 if the newest restore drill passed, 0 if it failed.",
               per { $0.status.lastDrill.map { $0.result == "passed" ? 1 : 0 } })
        family("drctl_drill_last_duration_seconds", "gauge", "Measured RTO of the newest restore drill: start until the data was verified.",
               per { $0.status.lastDrill.map(\.rtoSeconds) })
        family("drctl_rto_objective_seconds", "gauge", "The policy's RTO objective.", per { Double($0.rtoObjectiveSeconds) })
        family("drctl_predicted_rto_seconds", "gauge", "The RTO of a restore started now, predicted from the drills' measured rates and what the restore would read (databases only).",
               per { $0.status.predictedRTO?.seconds })
        family("drctl_predicted_rto_high_seconds", "gauge", "The upper end of the predicted RTO's stated error.",
               per { $0.status.predictedRTO?.highSeconds })
        func copies(_ value: (WorkloadStatus.Copy) -> Double?) -> [([(String, String)], Double)] {
            ws.flatMap { w in w.status.copies.compactMap { c in value(c).map { ([("workload", w.status.workload), ("copy", c.store)], $0) } } }
        }
        family("drctl_copy_lag_seconds", "gauge", "How long the oldest object not yet on the copy has waited (0: the copy is complete).",
               copies { $0.error == nil ? $0.lagSeconds : nil })
        family("drctl_copy_max_lag_seconds", "gauge", "The copy's maxLag objective.", copies { $0.maxLagSeconds.map(Double.init) })
        family("drctl_copy_last_success_timestamp_seconds", "gauge", "End of the last copy run that copied everything it listed.",
               copies { $0.lastSuccess?.timeIntervalSince1970 })
        family("drctl_copy_up", "gauge", "1 if the copy could be read at the last evaluation.", copies { $0.error == nil ? 1 : 0 })
        family("drctl_copy_changed_objects", "gauge", "Write-once backup objects the source changed after they were copied (the copy keeps the originals).",
               copies { $0.error == nil ? Double($0.changedAtSource?.count ?? 0) : nil })
        family("drctl_workload_status", "gauge", "1 for the workload's current status (PROTECTED, AT RISK, BROKEN, NOT CONFIGURED, UNKNOWN).",
               ws.map { ([("workload", $0.status.workload), ("status", $0.status.status.rawValue)], 1) })
        family("drctl_drill_runs_total", "counter", "Restore drills this service ran, by result.",
               follower ? [] : counters.drillRuns.sorted { $0.key < $1.key }.flatMap { w, results in
                   results.sorted { $0.key < $1.key }.map { ([("workload", w), ("result", $0.key)], Double($0.value)) }
               })
        family("drctl_evidence_undecodable_objects", "gauge", "Drill evidence objects in the bucket that do not decode (skipped).",
               follower ? [] : [([], Double(s.undecodableEvidence))])
        family("drctl_unauthenticated_records", "gauge", "drctl records in the bucket that are not sealed with drctl's record key (forged, changed, or sealed with a key drctl does not hold): ignored for every decision.",
               follower ? [] : [([("kind", "evidence")], Double(s.unauthenticatedEvidence)),
                                ([("kind", "copy-record")], Double(Set(ws.flatMap { $0.status.copies.filter { $0.recordUnauthenticated == true }.map(\.store) }).count))]
                                + (s.rehearsal.map { [([("kind", "rehearsal")], Double($0.unauthenticated))] } ?? []))
        let stores = s.stores.sorted { $0.name < $1.name }
        family("drctl_object_store_up", "gauge", "1 if the last request to the object store succeeded.",
               stores.compactMap { st in st.up.map { ([("store", st.name)], $0 ? 1 : 0) } })
        family("drctl_catalog_last_sync_success_timestamp_seconds", "gauge", "End of the last successful catalog sync.",
               stores.compactMap { st in st.lastSyncSuccess.map { ([("store", st.name)], $0.timeIntervalSince1970) } })
        family("drctl_catalog_sync_duration_seconds", "gauge", "Duration of the last catalog sync.",
               stores.compactMap { st in st.lastSyncSeconds.map { ([("store", st.name)], $0) } })
        family("drctl_catalog_sync_errors_total", "counter", "Failed catalog syncs since the service started.",
               stores.map { ([("store", $0.name)], Double($0.syncErrors)) })
        family("drctl_catalog_objects", "gauge", "Objects the catalog indexes for the store.",
               stores.map { ([("store", $0.name)], Double($0.objectsIndexed)) })
        if let a = follower ? nil : s.alerts {
            family("drctl_alertmanager_up", "gauge", "1 if Alertmanager answered the last alert path check.",
                   [([("alertmanager", a.alertmanager)], a.alertmanagerUp ? 1 : 0)])
            // Unknown (Alertmanager down) is no sample: a path nobody could test is not broken.
            family("drctl_alert_route_up", "gauge", "1 if the last test alert reached the receiver through its integration, 0 if it failed or no route took it there.",
                   a.receivers.filter { $0.state != .unknown }.map { ([("receiver", $0.receiver), ("integration", $0.integration)], $0.up ? 1 : 0) })
            family("drctl_alert_check_last_run_timestamp_seconds", "gauge", "Start of the last alert path check.",
                   [([], a.checkedAt.timeIntervalSince1970)])
        }
        if let r = follower ? nil : s.rehearsal {
            let from = [("from", r.from)]
            family("drctl_site_rto_seconds", "gauge", "The site RTO of the newest site rehearsal that brought every workload back: start until the last was healthy.",
                   r.newestPassed.map { [(from, $0.siteRTOSeconds)] } ?? [])
            family("drctl_site_rto_objective_seconds", "gauge", "The site's RTO objective (kind: Rehearsal).", [(from, Double(r.objectiveSeconds))])
            family("drctl_site_rehearsal_last_success_timestamp_seconds", "gauge", "End of the newest site rehearsal that brought every workload back.",
                   r.newestPassed.map { [(from, $0.finishedAt.timeIntervalSince1970)] } ?? [])
            family("drctl_site_rehearsal_last_run_timestamp_seconds", "gauge", "Start of the newest site rehearsal.",
                   r.newest.map { [(from, $0.startedAt.timeIntervalSince1970)] } ?? [])
            family("drctl_site_rehearsal_last_success", "gauge", "1 if the newest site rehearsal brought every workload back, 0 if not.",
                   r.newest.map { [(from, $0.result == .passed ? 1 : 0)] } ?? [])
        }
        let beats = follower ? [] : s.heartbeats.sorted { ($0.workload, $0.cluster) < ($1.workload, $1.cluster) }
        family("drctl_heartbeat_last_success_timestamp_seconds", "gauge", "The last heartbeat row this service wrote into the production database.",
               beats.compactMap { h in h.lastSuccess.map { ([("workload", h.workload), ("cluster", h.cluster)], $0.timeIntervalSince1970) } })
        family("drctl_heartbeat_up", "gauge", "1 if the last heartbeat write succeeded, 0 if it failed.",
               beats.filter { $0.lastSuccess != nil || $0.error != nil }.map { ([("workload", $0.workload), ("cluster", $0.cluster)], $0.error == nil ? 1 : 0) })
        family("drctl_job_failures_total", "counter", "Scheduled jobs of this service that failed, by job.",
               (follower ? [:] : counters.jobFailures).sorted { $0.key < $1.key }.map { ([("job", $0.key)], Double($0.value)) })
        return out
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func format(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return String(format: "%.6f", v)
    }
}

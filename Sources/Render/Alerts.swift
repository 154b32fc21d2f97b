import Support
import Policy

/// drctl's PrometheusRule. Every alert reads a documented drctl metric (or Velero's/CNPG's
/// own where they say it first), carries summary/description/severity, and links its runbook.
/// Thresholds come from each policy's schedules, not from one fixed number.
public enum Alerts {
    public struct Alert: Sendable {
        public var name: String
        public var expr: String
        public var forDuration: String
        public var severity: String
        public var summary: String
        public var description: String
        /// Static labels beyond severity: what a per-workload rule is about (also for routing).
        public var labels: [String: String] = [:]
    }

    /// Every alert name drctl can render (each has `runbooks/<name>.md`).
    public static let names = [
        "DrctlBackupMissing", "DrctlBackupFailed", "DrctlVeleroBackupPartiallyFailed", "DrctlWALArchivingStale",
        "DrctlWALArchivingFailing", "DrctlWALGap", "DrctlRPOBreached", "DrctlRestoreDrillFailed", "DrctlRestoreDrillNotRun",
        "DrctlRTOExceeded", "DrctlCatalogSyncFailing", "DrctlObjectStoreUnreachable", "DrctlCopyLagging",
        "DrctlBackupObjectChanged", "DrctlUnauthenticatedRecord", "DrctlWatchdog", "DrctlAlertRouteBroken",
        "DrctlRTOAtRisk", "DrctlSiteRTOExceeded", "DrctlSiteRehearsalNotRun", "DrctlHeartbeatFailing",
    ]

    /// Rendered only when the policies ask for what they watch (a kind: Rehearsal, a heartbeat).
    public static let conditional: Set = ["DrctlSiteRTOExceeded", "DrctlSiteRehearsalNotRun", "DrctlHeartbeatFailing"]

    /// The label drctl's synthetic check alert carries: the receiver whose path it tests.
    public static let checkReceiverLabel = "drctl_check_receiver"
    /// The check alert's name (it goes only to the receiver it names).
    public static let checkAlertName = "DrctlAlertPathCheck"


    static func q(_ s: String) -> String { "\"\(s)\"" }

    /// A backup source whose newest success is too old, or that has none at all.
    static func backupMissing(workload: String, kind: String, source: String, gap: Int, schedule: String,
                              summary: String, what: String) -> Alert {
        let metric = "drctl_backup_last_success_timestamp_seconds{workload=\(q(workload)),kind=\(q(kind)),source=\(q(source))}"
        let limit = overdueAfter(interval: gap)
        return Alert(name: "DrctlBackupMissing", expr: "(time() - \(metric) > \(limit)) or absent(\(metric))",
                     forDuration: "15m", severity: "critical", summary: summary,
                     description: "The newest \(what) is older than \(TimeSpan.humanize(limit)) (schedule \(schedule)), or none exists.",
                     labels: ["workload": workload, "kind": kind, "source": source])
    }

    public static func alerts(_ set: PolicySet) -> [Alert] {
        var out: [Alert] = []
        for p in set.backupPolicies.sorted(by: { $0.name.value < $1.name.value }) {
            let w = p.name.value
            for s in p.velero?.schedules ?? [] {
                guard let gap = s.cron.value.longestGap else { continue }
                out.append(backupMissing(workload: w, kind: "velero", source: s.tier.value, gap: gap, schedule: s.cron.value.expression,
                                         summary: "No recent '\(s.tier.value)' Velero backup of \(w)",
                                         what: "completed '\(s.tier.value)' Velero backup of \(w) in the bucket"))
            }
            for c in p.cnpg {
                guard let gap = c.schedule.value.longestGap else { continue }
                out.append(backupMissing(workload: w, kind: "cnpg", source: c.cluster.value, gap: gap, schedule: c.schedule.value.expression,
                                         summary: "No recent base backup of CNPG cluster \(c.namespace)/\(c.cluster.value)",
                                         what: "DONE barman-cloud base backup of \(c.cluster.value) (serverName \(c.serverName.value))"))
                let walSel = "{workload=\(q(w)),cluster=\(q(c.cluster.value))}"
                out.append(Alert(name: "DrctlWALArchivingStale",
                                 expr: "time() - drctl_wal_last_archived_timestamp_seconds\(walSel) > \(p.rpo.value.seconds)",
                                 forDuration: "5m", severity: "critical",
                                 summary: "WAL of \(c.namespace)/\(c.cluster.value) has not reached the bucket within the RPO",
                                 description: "The newest WAL segment of \(c.cluster.value) in the bucket is older than the RPO of \(p.rpo.value); with archive_timeout \(Renderer.archiveTimeout(p, c)) a segment should arrive at least that often.",
                                 labels: ["workload": w, "cluster": c.cluster.value]))
            }
            if let d = p.drill, let gap = d.schedule.value.longestGap {
                let sel = "{workload=\(q(w))}"
                out.append(Alert(name: "DrctlRestoreDrillNotRun",
                                 expr: "(time() - drctl_drill_last_run_timestamp_seconds\(sel) > \(overdueAfter(interval: gap))) or absent(drctl_drill_last_run_timestamp_seconds\(sel))",
                                 forDuration: "30m", severity: "warning",
                                 summary: "No restore drill of \(w) within its interval",
                                 description: "The last restore drill of \(w) ran more than \(TimeSpan.humanize(overdueAfter(interval: gap))) ago (schedule \(d.schedule.value.expression)), or never: its restorability is unproven.",
                                 labels: ["workload": w]))
            }
        }
        if let r = set.rehearsal, let gap = r.schedule.value.longestGap {
            let metric = "drctl_site_rehearsal_last_success_timestamp_seconds{from=\(q(r.from.value))}"
            out.append(Alert(name: "DrctlSiteRehearsalNotRun", expr: "(time() - \(metric) > \(overdueAfter(interval: gap))) or absent(\(metric))",
                             forDuration: "30m", severity: "warning",
                             summary: "No site rehearsal from \(r.from.value) brought everything back within its interval",
                             description: "No site rehearsal from ObjectStore \(r.from.value) has brought every workload back in the last \(TimeSpan.humanize(overdueAfter(interval: gap))) (schedule \(r.schedule.value.expression)): that the site can come back from its copy is unproven.",
                             labels: ["from": r.from.value]))
            out.append(Alert(name: "DrctlSiteRTOExceeded", expr: "drctl_site_rto_seconds > drctl_site_rto_objective_seconds", forDuration: "0m", severity: "critical",
                             summary: "Bringing the site back from {{ $labels.from }} took longer than its RTO",
                             description: "The newest site rehearsal from {{ $labels.from }} took longer until the last workload was healthy than the site's RTO objective; its critical path names the workload and phase that decided it."))
        }
        if set.backupPolicies.contains(where: { $0.cnpg.contains { $0.heartbeat != nil } }) {
            out.append(Alert(name: "DrctlHeartbeatFailing",
                             expr: "(drctl_heartbeat_up == 0) or (time() - drctl_heartbeat_last_success_timestamp_seconds > 900)",
                             forDuration: "10m", severity: "warning",
                             summary: "drctl cannot write the heartbeat of {{ $labels.workload }}/{{ $labels.cluster }}",
                             description: "drctl serve's heartbeat rows are not reaching {{ $labels.cluster }}: drills measure the RPO in the data and find lost transactions only up to the newest row written."))
        }
        out += [
            Alert(name: "DrctlRTOAtRisk", expr: "drctl_predicted_rto_seconds > drctl_rto_objective_seconds", forDuration: "30m", severity: "warning",
                  summary: "A restore of {{ $labels.workload }} started now would take longer than its RTO",
                  description: "From the drills' measured fetch and replay rates and the base backup and WAL a restore would read today, restoring {{ $labels.workload }} would take longer than its RTO objective (drctl status shows the prediction, its range and the rates)."),
            Alert(name: "DrctlBackupFailed", expr: "drctl_backup_last_failure_timestamp_seconds > drctl_backup_last_success_timestamp_seconds",
                  forDuration: "0m", severity: "critical", summary: "The newest backup of {{ $labels.workload }} ({{ $labels.kind }} {{ $labels.source }}) failed",
                  description: "The newest {{ $labels.kind }} backup of {{ $labels.workload }} ({{ $labels.source }}) in the bucket is FAILED/Failed; nothing newer succeeded."),
            // Velero's and CNPG's series carry their own namespace, kept as source_namespace: every
            // alert of drctl's is labelled namespace=drctl (below), which the Prometheus
            // Operator's AlertmanagerConfig route matches on.
            Alert(name: "DrctlVeleroBackupPartiallyFailed", expr: sourceNamespace("increase(velero_backup_partial_failure_total{schedule!=\"\"}[2h]) > 0"),
                  forDuration: "0m", severity: "warning", summary: "Velero backup of schedule {{ $labels.schedule }} partially failed",
                  description: "A backup of Velero schedule {{ $labels.schedule }} finished PartiallyFailed in the last 2 hours: some items or volumes are missing from it."),
            Alert(name: "DrctlWALArchivingFailing", expr: sourceNamespace("cnpg_pg_stat_archiver_last_failed_time > cnpg_pg_stat_archiver_last_archived_time"),
                  forDuration: "5m", severity: "critical", summary: "WAL archiving of {{ $labels.source_namespace }}/{{ $labels.pod }} is failing",
                  description: "PostgreSQL's last archive attempt failed after its last success: WAL piles up in pg_wal and point-in-time recovery stops at the last archived segment."),
            Alert(name: "DrctlWALGap", expr: "drctl_wal_gaps > 0", forDuration: "0m", severity: "critical",
                  summary: "Missing WAL segments in the archive of {{ $labels.workload }}/{{ $labels.cluster }}",
                  description: "The WAL chain of {{ $labels.cluster }} after its newest base backup has missing segments: recovery cannot pass the first one."),
            Alert(name: "DrctlRPOBreached", expr: "drctl_rpo_seconds > drctl_rpo_objective_seconds", forDuration: "5m", severity: "critical",
                  summary: "{{ $labels.workload }} would lose more data than its RPO allows",
                  description: "The newest recoverable point of {{ $labels.workload }} is older than its RPO objective."),
            Alert(name: "DrctlRestoreDrillFailed", expr: "drctl_drill_last_success == 0", forDuration: "0m", severity: "critical",
                  summary: "The last restore drill of {{ $labels.workload }} failed",
                  description: "drctl could not restore {{ $labels.workload }} and verify it; see the drill's evidence for the failing phase or check."),
            Alert(name: "DrctlRTOExceeded", expr: "drctl_drill_last_duration_seconds > drctl_rto_objective_seconds", forDuration: "0m", severity: "warning",
                  summary: "Restoring {{ $labels.workload }} took longer than its RTO",
                  description: "The last restore drill of {{ $labels.workload }} took longer than its RTO objective."),
            Alert(name: "DrctlCatalogSyncFailing",
                  expr: "(time() - drctl_catalog_last_sync_success_timestamp_seconds > 7200) or (increase(drctl_catalog_sync_errors_total[30m]) > 2)",
                  forDuration: "10m", severity: "warning", summary: "drctl cannot keep its catalog of {{ $labels.store }} up to date",
                  description: "Catalog sync of object store {{ $labels.store }} has not succeeded for 2 hours or keeps failing: backup and RPO alerts work from stale data."),
            Alert(name: "DrctlObjectStoreUnreachable", expr: "drctl_object_store_up == 0", forDuration: "10m", severity: "critical",
                  summary: "Object store {{ $labels.store }} is unreachable",
                  description: "drctl's last requests to {{ $labels.store }} failed: backups may not be landing, and restores would fail."),
            Alert(name: "DrctlCopyLagging",
                  expr: "(drctl_copy_lag_seconds > on(workload, copy) drctl_copy_max_lag_seconds) or (drctl_copy_up == 0)",
                  forDuration: "10m", severity: "critical", summary: "The copy of {{ $labels.workload }}'s backups in {{ $labels.copy }} is behind or unreadable",
                  description: "Objects of {{ $labels.workload }}'s store have waited longer than the copy's maxLag to reach {{ $labels.copy }}, or drctl cannot read the copy: losing the primary store now would lose more than the objective allows."),
            Alert(name: "DrctlBackupObjectChanged", expr: "drctl_copy_changed_objects > 0", forDuration: "0m", severity: "critical",
                  summary: "Backup objects of {{ $labels.workload }} changed at the source after they were copied to {{ $labels.copy }}",
                  description: "Base backup files, WAL, history files and DONE backup.info files are written once by their tools: some were rewritten at the source after drctl copied them (an attack or a fault). The copy kept the originals; the source's versions are beside them."),
            Alert(name: "DrctlUnauthenticatedRecord", expr: "drctl_unauthenticated_records > 0", forDuration: "0m", severity: "warning",
                  summary: "drctl records in the bucket are not sealed with drctl's key",
                  description: "{{ $labels.kind }} records in the bucket do not verify against drctl's record key (forged, changed, or sealed with a key drctl no longer holds): drctl ignores them for every decision."),
            // The dead man's switch: always firing, routed to the watchdog receiver only; its
            // absence there is what pages. It also stops while a receiver is broken, so that the
            // heartbeat service pages even when the broken receiver was the only other one.
            Alert(name: "DrctlWatchdog", expr: "vector(1) unless on() (drctl_alert_route_up == 0)", forDuration: "0m", severity: "none",
                  summary: "drctl's alert pipeline is alive (this alert always fires)",
                  description: "Always firing, sent to the watchdog receiver (a dead man's switch): when it stops arriving there, Prometheus, its rules or Alertmanager are down and no other alert would arrive either, or drctl found a receiver that does not get alerts (DrctlAlertRouteBroken)."),
            Alert(name: "DrctlAlertRouteBroken", expr: "drctl_alert_route_up == 0", forDuration: "0m", severity: "critical",
                  summary: "Alerts to receiver {{ $labels.receiver }} ({{ $labels.integration }}) do not arrive",
                  description: "drctl's test alert through Alertmanager to {{ $labels.receiver }} failed at its {{ $labels.integration }} integration: every alert routed there reaches nobody. Sent to the other receivers."),
        ]
        return out
    }

    /// `expr`'s series with their `namespace` copied to `source_namespace`.
    static func sourceNamespace(_ expr: String) -> String {
        "label_replace(\(expr), \"source_namespace\", \"$1\", \"namespace\", \"(.*)\")"
    }

    public static func prometheusRule(_ set: PolicySet, _ o: RenderOptions) -> [String: any Sendable] {
        let rules: [[String: any Sendable]] = alerts(set).map { a in
            var annotations = ["summary": a.summary, "description": a.description, "runbook_url": "\(o.runbookBaseURL)/\(a.name).md"]
            if let page = set.alerting?.statusPage { annotations["status_page"] = page }
            var r: [String: any Sendable] = [
                "alert": a.name, "expr": a.expr,
                // namespace: what an AlertmanagerConfig in drctl's namespace is matched on (an
                // absent() alert has no labels of its own).
                "labels": a.labels.merging(["severity": a.severity, "namespace": o.drctlNamespace]) { $1 },
                "annotations": annotations,
            ]
            if a.forDuration != "0m" { r["for"] = a.forDuration }
            return r
        }
        return [
            "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": metadata(name: "drctl", namespace: o.drctlNamespace),
            "spec": ["groups": [["name": "drctl.backups", "rules": rules] as [String: any Sendable]]],
        ]
    }
}

/// The Alertmanager route and receivers for drctl's alerts, as a Prometheus Operator
/// AlertmanagerConfig (monitoring.coreos.com/v1alpha1) in drctl's namespace. The operator nests
/// its route under Alertmanager's root with a `namespace="<its namespace>"` matcher, which every
/// drctl alert carries. Order matters (first match wins unless `continue`): the watchdog to its
/// receiver only; each receiver's check alert to that receiver only; every other drctl alert to
/// every non-watchdog receiver.
public enum AlertRouting {
    public static func config(_ a: AlertingPolicy, _ o: RenderOptions) -> [String: any Sendable] {
        let real = a.receivers.filter { !$0.watchdog }
        var routes: [[String: any Sendable]] = []
        let watchdog = a.receivers.first(where: \.watchdog)?.name.value ?? "drctl-null"
        routes.append(["receiver": watchdog, "matchers": [matcher("alertname", "DrctlWatchdog")],
                       "groupWait": "0s", "groupInterval": "1m", "repeatInterval": "5m"])
        for r in a.receivers {
            routes.append(["receiver": r.name.value, "matchers": [matcher(Alerts.checkReceiverLabel, r.name.value)],
                           "groupBy": ["drctl_check_id"], "groupWait": "0s", "groupInterval": "1m", "repeatInterval": "1h"])
        }
        for r in real {
            routes.append(["receiver": r.name.value, "continue": true])
        }
        var receivers: [[String: any Sendable]] = a.receivers.map { r in
            switch r.target {
            case .slack(let channel, let url):
                return ["name": r.name.value, "slackConfigs": [[
                    "apiURL": ["name": url.name, "key": url.key], "channel": channel, "sendResolved": true,
                    "title": "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}{{ if .CommonLabels.workload }} {{ .CommonLabels.workload }}{{ end }}",
                    "text": "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ .Annotations.description }}\nRunbook: {{ .Annotations.runbook_url }}\n{{ end }}"
                        + (a.statusPage.map { "Status page: \($0)" } ?? ""),
                ] as [String: any Sendable]]]
            case .webhook(let url, let secret):
                var c: [String: any Sendable] = ["sendResolved": true]
                if let url { c["url"] = url }
                if let secret { c["urlSecret"] = ["name": secret.name, "key": secret.key] }
                return ["name": r.name.value, "webhookConfigs": [c]]
            }
        }
        if !a.receivers.contains(where: \.watchdog) { receivers.append(["name": "drctl-null"]) }
        return [
            "apiVersion": "monitoring.coreos.com/v1alpha1", "kind": "AlertmanagerConfig",
            "metadata": metadata(name: "drctl", namespace: o.drctlNamespace),
            "spec": [
                "route": [
                    "receiver": real.first?.name.value ?? watchdog,
                    "matchers": [["name": "alertname", "value": "Drctl.*", "matchType": "=~"] as [String: any Sendable]],
                    "groupBy": ["alertname", "workload"], "groupWait": "30s", "groupInterval": "5m", "repeatInterval": "4h",
                    "routes": routes,
                ] as [String: any Sendable],
                "receivers": receivers,
            ] as [String: any Sendable],
        ]
    }

    static func matcher(_ name: String, _ value: String) -> [String: any Sendable] { ["name": name, "value": value, "matchType": "="] }
}

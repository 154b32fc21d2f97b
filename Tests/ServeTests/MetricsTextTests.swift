import Foundation
import Testing
@testable import AlertPath
@testable import Catalog
@testable import Policy
@testable import Serve

/// A snapshot of two workloads: `app` protected with a passed drill, `a"b` broken by a WAL gap.
func sampleSnapshot(now: Date) -> Snapshot {
    func status(_ name: String, _ state: WorkloadStatus.State, newest: Date?, drill: DrillSummary?, sources: [WorkloadStatus.Source], reasons: [String] = []) -> WorkloadStatus {
        WorkloadStatus(workload: name, methods: ["CNPG barman-cloud"], schedules: [], retention: [], lastBackup: newest, newestRecoverablePoint: newest,
                       recoverablePointEvidence: nil, rpoSeconds: newest.map { Int(now.timeIntervalSince($0)) }, rpoObjectiveSeconds: 3600, status: state,
                       reasons: reasons, lastDrill: drill, sources: sources)
    }
    let drill = DrillEvidence(id: "20261127T100000Z-1", workload: "app", mode: "host", host: "h", startedAt: now.addingTimeInterval(-600), finishedAt: now.addingTimeInterval(-590),
                              target: "latest", targetTime: nil, result: .passed, error: nil, databases: [],
                              checks: [.init(name: "sql", result: .passed, detail: "got 42, expected = 42", seconds: 0.1)],
                              rtoSeconds: 9.5, rtoObjectiveSeconds: 600, rpoSeconds: 1, rpoObjectiveSeconds: 3600,
                              phases: ["download_unpack": 2, "wal_replay": 6.5, "checks": 1], bytesFetched: 1000)
    var appStatus = status("app", .protected, newest: now.addingTimeInterval(-120), drill: DrillSummary(drill),
                           sources: [.init(kind: "cnpg", source: "app-db", lastSuccess: now.addingTimeInterval(-3600), lastFailure: nil,
                                           walLastArchived: now.addingTimeInterval(-120), walGaps: 0)])
    appStatus.copies = [.init(store: "offsite", lagSeconds: 90, maxLagSeconds: 3600, pending: 2, lastSuccess: now.addingTimeInterval(-300)),
                        .init(store: "usb", error: "not mounted")]
    let app = Snapshot.Workload(
        status: appStatus,
        rtoObjectiveSeconds: 600, store: "rgw",
        timeline: .init(points: [.init(kind: "cnpg", source: "app-db", id: "20261127T090000", at: now.addingTimeInterval(-3600), restorable: true)],
                        wal: [.init(cluster: "app-db", from: now.addingTimeInterval(-3600), to: now.addingTimeInterval(-120))]),
        runbooks: ["DrctlWALGap": "runbooks/DrctlWALGap.md"])
    let odd = Snapshot.Workload(
        status: status("a\"b<script>", .broken, newest: nil, drill: nil,
                       sources: [.init(kind: "cnpg", source: "db", lastSuccess: now.addingTimeInterval(-7200), lastFailure: now.addingTimeInterval(-60),
                                       walLastArchived: now.addingTimeInterval(-30), walGaps: 1)],
                       reasons: ["db: WAL segment 000000010000000000000005 is missing from the archive"]),
        rtoObjectiveSeconds: 600, store: "rgw",
        timeline: .init(points: [], wal: [.init(cluster: "db", from: now.addingTimeInterval(-7200), to: now.addingTimeInterval(-5000)),
                                          .init(cluster: "db", from: now.addingTimeInterval(-5000), to: now.addingTimeInterval(-4000), missing: "000000010000000000000005"),
                                          .init(cluster: "db", from: now.addingTimeInterval(-4000), to: now.addingTimeInterval(-30))]),
        runbooks: [:])
    return Snapshot(generatedAt: now, workloads: [app, odd],
                    stores: [.init(name: "rgw", up: false, lastSyncSuccess: now.addingTimeInterval(-10), lastSyncSeconds: 0.5, syncErrors: 2, objectsIndexed: 1234,
                                   lastError: "cannot reach", runbooks: ["DrctlObjectStoreUnreachable": "runbooks/DrctlObjectStoreUnreachable.md"])],
                    drills: [drill])
}

@Suite struct MetricsTextTests {
    let now = Date(timeIntervalSince1970: 1_795_777_800)

    @Test func exposesWhatTheRulesRead() {
        var counters = MetricsText.Counters()
        counters.drillRuns = ["app": ["passed": 3, "failed": 1]]
        counters.jobFailures = ["drill app": 1]
        let text = MetricsText.render(sampleSnapshot(now: now), counters: counters, now: now)
        let lines = Set(text.split(separator: "\n").map(String.init))
        for expected in [
            #"drctl_backup_last_success_timestamp_seconds{workload="app",kind="cnpg",source="app-db"} 1795774200"#,
            #"drctl_backup_last_failure_timestamp_seconds{workload="a\"b<script>",kind="cnpg",source="db"} 1795777740"#,
            #"drctl_wal_gaps{workload="a\"b<script>",cluster="db"} 1"#,
            #"drctl_wal_last_archived_timestamp_seconds{workload="app",cluster="app-db"} 1795777680"#,
            #"drctl_rpo_seconds{workload="app"} 120"#,
            #"drctl_rpo_objective_seconds{workload="app"} 3600"#,
            #"drctl_drill_last_success{workload="app"} 1"#,
            #"drctl_drill_last_duration_seconds{workload="app"} 9.500000"#,
            #"drctl_rto_objective_seconds{workload="app"} 600"#,
            #"drctl_workload_status{workload="a\"b<script>",status="BROKEN"} 1"#,
            #"drctl_drill_runs_total{workload="app",result="failed"} 1"#,
            #"drctl_object_store_up{store="rgw"} 0"#,
            #"drctl_catalog_sync_errors_total{store="rgw"} 2"#,
            #"drctl_catalog_objects{store="rgw"} 1234"#,
            #"drctl_job_failures_total{job="drill app"} 1"#,
            #"drctl_copy_lag_seconds{workload="app",copy="offsite"} 90"#,
            #"drctl_copy_max_lag_seconds{workload="app",copy="offsite"} 3600"#,
            #"drctl_copy_last_success_timestamp_seconds{workload="app",copy="offsite"} 1795777500"#,
            #"drctl_copy_up{workload="app",copy="offsite"} 1"#,
            #"drctl_copy_up{workload="app",copy="usb"} 0"#,
            "# TYPE drctl_drill_runs_total counter",
        ] {
            #expect(lines.contains(expected), "missing: \(expected)\n\(text)")
        }
        // No drill, no recoverable point: no sample (the rules' absent() sees that), never a made-up value.
        #expect(!text.contains(#"drctl_drill_last_success{workload="a\"b<script>"}"#))
        #expect(!text.contains(#"drctl_rpo_seconds{workload="a\"b<script>"}"#))
        // The RPO is measured at scrape time.
        let later = MetricsText.render(sampleSnapshot(now: now), now: now.addingTimeInterval(600))
        #expect(later.contains(#"drctl_rpo_seconds{workload="app"} 720"#))
    }
}

@Suite struct StatusPageTests {
    let now = Date(timeIntervalSince1970: 1_795_777_800)

    @Test func rowsLightsTimelinesAndGaps() {
        let html = StatusPage.render(sampleSnapshot(now: now), now: now)
        #expect(html.contains(#"<tr class="workload protected" data-workload="app" data-status="protected">"#))
        #expect(html.contains(#"data-workload="a&quot;b&lt;script&gt;" data-status="broken""#), "names are escaped")
        #expect(!html.contains("<script>"), "no script at all")
        #expect(html.components(separatedBy: "<svg class=\"timeline\"").count - 1 == 2, "one timeline per workload")
        #expect(html.contains(#"<rect class="wal-gap" data-missing="000000010000000000000005""#))
        #expect(html.contains(#"class="drill-marker passed""#))
        #expect(html.contains("copy to offsite: lag 1m30s (maxLag 1h), last complete copy 2026-"), "the page shows each copy")
        #expect(StatusPage.relevantAlerts(sampleSnapshot(now: now).workloads[0], now: now).contains("DrctlCopyLagging"), "an unreadable copy concerns its alert")
        #expect(html.contains(#"runbook: <a href="runbooks/DrctlWALGap.md">DrctlWALGap</a>"#) == false, "app has no gap")
        #expect(html.contains(#"<details class="runbooks"><summary>all runbooks</summary><a href="runbooks/DrctlWALGap.md">DrctlWALGap</a>"#))
        #expect(StatusPage.relevantAlerts(sampleSnapshot(now: now).workloads[1], now: now) == ["DrctlWALGap", "DrctlBackupFailed"])
        #expect(StatusPage.relevantAlerts(sampleSnapshot(now: now).workloads[0], now: now) == ["DrctlCopyLagging"], "only its unreadable copy")
        #expect(html.contains("rpo-band"))
        #expect(html.contains(#"runbook: <a href="runbooks/DrctlObjectStoreUnreachable.md">DrctlObjectStoreUnreachable</a>"#), "the store row links its alert's runbook")
        #expect(!html.contains("http://") && !html.contains("https://"), "no external asset")
        // The worst first.
        let broken = html.range(of: "data-status=\"broken\"")!.lowerBound, ok = html.range(of: "data-status=\"protected\"")!.lowerBound
        #expect(broken < ok)
        let drill = StatusPage.drill(sampleSnapshot(now: now).drills[0])
        #expect(drill.contains(#"data-phase="wal_replay""#) && drill.contains("got 42, expected = 42"))
    }
}

/// A replica's metrics and page: followers leave the bucket's families to the leader, and the
/// alert path shows as it was found.
@Suite struct ReplicaAndAlertPathRenderingTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func aFollowerExportsItsLeadershipAndNoWorkloadFamilies() {
        let s = sampleSnapshot(now: now)
        let follower = MetricsText.render(s, now: now, role: .init(replica: "drctl-1", leader: false))
        #expect(follower.contains("drctl_leader{replica=\"drctl-1\"} 0"))
        #expect(!follower.contains("drctl_rpo_seconds") && !follower.contains("drctl_drill_last_success") && !follower.contains("drctl_copy_"))
        let leader = MetricsText.render(s, now: now, role: .init(replica: "drctl-0", leader: true))
        #expect(leader.contains("drctl_leader{replica=\"drctl-0\"} 1") && leader.contains("drctl_rpo_seconds{workload=\"app\"}"))
        #expect(!MetricsText.render(s, now: now).contains("drctl_leader"), "alone: no leader family")
    }

    @Test func theAlertPathIsAMetricPerReceiverAndALineOnThePage() {
        var s = sampleSnapshot(now: now)
        s.alerts = AlertPathReport(alertmanager: "http://am:9093", alertmanagerUp: true, error: nil, receivers: [
            .init(receiver: "slack", integration: "slack", state: .failed, detail: "slack notification failed", checkedAt: now),
            .init(receiver: "beat", integration: "webhook", state: .delivered, detail: "", checkedAt: now),
        ], checkedAt: now)
        let m = MetricsText.render(s, now: now)
        #expect(m.contains("drctl_alert_route_up{receiver=\"slack\",integration=\"slack\"} 0") && m.contains("drctl_alert_route_up{receiver=\"beat\",integration=\"webhook\"} 1"))
        #expect(m.contains("drctl_alertmanager_up{alertmanager=\"http://am:9093\"} 1"))
        let page = StatusPage.render(s, now: now)
        #expect(page.contains("class=\"alerts broken\"") && page.contains("<b>slack</b> (slack) failed: slack notification failed"))
        var a = s.alerts!
        a.alertmanagerUp = false
        a.error = "connection refused"
        a.receivers = a.receivers.map { var r = $0; r.state = .unknown; return r }
        s.alerts = a
        let down = MetricsText.render(s, now: now)
        #expect(!down.contains("drctl_alert_route_up{"), "unknown is no sample, not a broken route")
        #expect(down.contains("drctl_alertmanager_up{alertmanager=\"http://am:9093\"} 0"))
        #expect(StatusPage.render(s, now: now).contains("did not answer (connection refused)"))
    }
}

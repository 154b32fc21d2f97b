import Foundation
import Testing
@testable import AlertPath
@testable import Policy

/// The check's verdicts from Alertmanager's routing and counters, with a fake Alertmanager.
@Suite struct AlertPathCheckTests {
    struct Down: Error, CustomStringConvertible { var description: String { "connection refused" } }

    /// Routes each test alert to `route[receiver]` and answers each with `outcome[receiver]`.
    final class FakeAlertmanager: AlertmanagerAPI, @unchecked Sendable {
        let lock = NSLock()
        var route: [String: [String]] = [:]
        var outcome: [String: Bool] = [:]          // receiver -> the notification succeeds
        var integration: [String: String] = [:]
        var down = false
        var posted: [PostedAlert] = []
        var requests: [String: Int] = [:], failed: [String: Int] = [:], notificationsFailed: [String: Int] = [:]
        /// receiver -> its requests fail but Alertmanager keeps retrying (a 5xx): no final failure.
        var retrying: Set<String> = []
        /// receiver -> answers 200 but the alert never reaches what the read-back URL shows.
        var dropping: Set<String> = []

        func post(_ alerts: [PostedAlert]) throws {
            try lock.withLock {
                if down { throw Down() }
                posted += alerts
                for a in alerts where a.endsAt > a.startsAt.addingTimeInterval(1) {
                    let r = a.labels["drctl_check_receiver"] ?? ""
                    for target in route[r] ?? ["drctl/drctl/\(r)"] {
                        let name = String(target.split(separator: "/").last ?? "")
                        let i = integration[name] ?? "webhook"
                        requests[i, default: 0] += 1
                        if outcome[name] != false && !dropping.contains(name) { received.append(a.labels["drctl_check_id"] ?? "") }
                        if outcome[name] == false {
                            failed[i, default: 0] += 1
                            if !retrying.contains(name) { notificationsFailed[i, default: 0] += 1 }
                        }
                    }
                }
            }
        }
        func receivers(ofAlertLabelled label: String, _ value: String) throws -> [String]? {
            try lock.withLock {
                if down { throw Down() }
                guard let a = posted.last(where: { $0.labels[label] == value }) else { return nil }
                return route[a.labels["drctl_check_receiver"] ?? ""] ?? ["drctl/drctl/\(a.labels["drctl_check_receiver"] ?? "")"]
            }
        }
        var received: [String] = []   // what the read-back URL shows
        func readBack(_ url: String) throws -> String { lock.withLock { received.joined(separator: "\n") } }
        func metrics() throws -> String {
            try lock.withLock {
                if down { throw Down() }
                return (["slack", "webhook"].map { i in
                    "alertmanager_notification_requests_total{integration=\"\(i)\"} \(requests[i] ?? 0)\n" +
                    "alertmanager_notification_latency_seconds_count{integration=\"\(i)\"} \(requests[i] ?? 0)\n" +
                    "alertmanager_notification_requests_failed_total{integration=\"\(i)\"} \(failed[i] ?? 0)\n" +
                    "alertmanager_notifications_failed_total{integration=\"\(i)\"} \(notificationsFailed[i] ?? 0)\n"
                }).joined()
            }
        }
    }

    static func policy() -> AlertingPolicy {
        let here = SourceLocation(file: "a.yaml", line: 1, column: 1)
        return AlertingPolicy(name: Located("alerts", here), alertmanager: nil, statusPage: nil, checkSchedule: nil, receivers: [
            .init(name: Located("slack", here), target: .slack(channel: "#a", apiURL: SecretKeyRef(name: "s", key: "url")), watchdog: false, readBack: nil),
            .init(name: Located("heartbeat", here), target: .webhook(url: "http://h", urlSecret: nil), watchdog: true, readBack: nil),
        ])
    }

    func check(_ am: FakeAlertmanager) -> AlertPathReport {
        am.integration = ["slack": "slack", "heartbeat": "webhook"]
        var c = AlertPathCheck(policy: Self.policy(), api: am, alertmanager: "http://am")
        c.timeout = 1
        c.poll = 0.01
        return c.run()
    }

    @Test func aReceiverAnswering404IsBrokenAndTheOtherIsNot() {
        let am = FakeAlertmanager()
        am.outcome = ["slack": false, "heartbeat": true]
        let r = check(am)
        #expect(r.alertmanagerUp && !r.healthy)
        #expect(r.receivers.map(\.state) == [.failed, .delivered], "\(r.receivers)")
        #expect(r.receivers[0].detail.contains("slack notification failed"))
        // Every test alert is resolved afterwards, and each carried its own id and receiver.
        let firing = am.posted.filter { $0.endsAt > $0.startsAt.addingTimeInterval(1) }
        #expect(Set(firing.map { $0.labels["drctl_check_id"] ?? "" }).count == 2)
        #expect(am.posted.count == 4)
        // Resolved only after both were checked.
        #expect(am.posted.prefix(2).allSatisfy { $0.endsAt > $0.startsAt.addingTimeInterval(1) } && am.posted.suffix(2).allSatisfy { $0.endsAt <= $0.startsAt.addingTimeInterval(1) })
        #expect(firing.allSatisfy { $0.labels["alertname"] == "DrctlAlertPathCheck" && $0.labels["namespace"] == "drctl" })
    }

    /// A 5xx Alertmanager retries is not yet a broken route: failed only if no request succeeded
    /// by the timeout.
    @Test func failuresStillRetriedAreFailedOnlyAtTheTimeout() {
        let am = FakeAlertmanager()
        am.outcome = ["slack": false, "heartbeat": true]
        am.retrying = ["slack"]
        let r = check(am)
        #expect(r.receivers[0].state == .failed && r.receivers[0].detail.contains("Alertmanager still retries"), "\(r.receivers[0])")
    }

    /// Another namespace's receiver of the same name is not ours.
    @Test func anotherConfigsReceiverOfTheSameNameIsNotRouted() {
        let am = FakeAlertmanager()
        am.outcome = ["slack": true, "heartbeat": true]
        am.route = ["slack": ["team-b/alerts/slack"]]
        #expect(check(am).receivers[0].state == .notRouted)
    }

    /// A receiver with a read-back URL is delivered only when its receipt shows the test alert.
    @Test func aReceiptThatNeverArrivesIsAFailure() {
        let am = FakeAlertmanager()
        am.outcome = ["slack": true, "heartbeat": true]
        am.dropping = ["heartbeat"]
        var p = Self.policy()
        p.receivers[1].readBack = "http://h/received"
        am.integration = ["slack": "slack", "heartbeat": "webhook"]
        var c = AlertPathCheck(policy: p, api: am, alertmanager: "http://am")
        c.timeout = 0.3
        c.poll = 0.01
        let r = c.run()
        #expect(r.receivers[1].state == .failed && r.receivers[1].detail.contains("Alertmanager counts it delivered, but the test alert"), "\(r.receivers[1])")
        am.dropping = []
        let ok = c.run()
        #expect(ok.receivers[1].state == .delivered && ok.receivers[1].detail == "receipt read back", "\(ok.receivers[1])")
    }

    @Test func anAlertRoutedElsewhereIsNotRouted() {
        let am = FakeAlertmanager()
        am.outcome = ["slack": true, "heartbeat": true]
        am.route = ["slack": ["default-receiver"]]
        let r = check(am)
        #expect(r.receivers[0].state == .notRouted && r.receivers[0].detail.contains("default-receiver"), "\(r.receivers[0])")
        #expect(r.receivers[1].state == .delivered)
    }

    @Test func alertmanagerDownIsReportedAsSuchNotAsBrokenRoutes() {
        let am = FakeAlertmanager()
        am.down = true
        let r = check(am)
        #expect(!r.alertmanagerUp && r.error?.contains("connection refused") == true)
        #expect(r.receivers.allSatisfy { $0.state == .unknown }, "\(r.receivers)")
    }

    @Test func countersSumOverLaterVersionsLabels() {
        let text = """
            # HELP alertmanager_notifications_failed_total x
            alertmanager_notifications_failed_total{integration="slack",reason="clientError",receiver_name="a"} 2
            alertmanager_notifications_failed_total{integration="slack",reason="serverError",receiver_name="a"} 1
            alertmanager_notifications_total{integration="slack"} 7
            alertmanager_notification_requests_total{integration="webhook"} 3
            alertmanager_notification_latency_seconds_count{integration="slack"} 5
            something_else{integration="slack"} 9
            """
        let c = NotificationCounters(parsing: text)
        #expect(c.notificationsFailed["slack"] == 3 && c.notifications["slack"] == 7 && c.requests["webhook"] == 3)
        let o = c.since(NotificationCounters(), integration: "slack")
        #expect(o.failedNotifications == 3 && o.succeeded == 5, "answered requests, not started ones: \(o)")
    }
}

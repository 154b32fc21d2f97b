import Foundation
import Policy
import Render
import Support

/// What drctl asks of Alertmanager (its v2 API and /metrics): small, so the check's logic is
/// tested without a server and the HTTP client stays at the edge.
public protocol AlertmanagerAPI: Sendable {
    /// POST /api/v2/alerts.
    func post(_ alerts: [PostedAlert]) throws
    /// GET /api/v2/alerts?filter=label="value": each alert's receivers, as Alertmanager routed it.
    func receivers(ofAlertLabelled label: String, _ value: String) throws -> [String]?
    /// GET /metrics: the Prometheus text exposition.
    func metrics() throws -> String
    /// GET of a receiver's read-back URL: what it received, as text.
    func readBack(_ url: String) throws -> String
}

public struct PostedAlert: Sendable, Equatable {
    public var labels: [String: String]
    public var annotations: [String: String]
    public var startsAt: Date
    public var endsAt: Date
    public init(labels: [String: String], annotations: [String: String], startsAt: Date, endsAt: Date) {
        self.labels = labels; self.annotations = annotations; self.startsAt = startsAt; self.endsAt = endsAt
    }
}

/// Alertmanager's notification counters by integration (slack, webhook, …), summed over any
/// further labels (later versions add receiver_name and reason). Pure.
public struct NotificationCounters: Sendable, Equatable {
    /// Notifications (after retries) and their failures: alertmanager_notifications_total / _failed_total.
    public var notifications: [String: Double] = [:]
    public var notificationsFailed: [String: Double] = [:]
    /// Each request to the integration, retries included: alertmanager_notification_requests_total / _failed_total.
    public var requests: [String: Double] = [:]
    public var requestsFailed: [String: Double] = [:]
    /// Attempts that got an answer (or gave up): alertmanager_notification_latency_seconds_count,
    /// observed after each request. A request counted here and not among the failures succeeded.
    public var answered: [String: Double] = [:]

    public init() {}

    public init(parsing text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let brace = line.firstIndex(of: "{"), let close = line.lastIndex(of: "}"), brace < close else { continue }
            let name = line[..<brace]
            guard let value = Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") else { continue }
            let labels = line[line.index(after: brace)..<close]
            guard let i = labels.range(of: "integration=\"") else { continue }
            let rest = labels[i.upperBound...]
            guard let end = rest.firstIndex(of: "\"") else { continue }
            let integration = String(rest[..<end])
            switch name {
            case "alertmanager_notifications_total": notifications[integration, default: 0] += value
            case "alertmanager_notifications_failed_total": notificationsFailed[integration, default: 0] += value
            case "alertmanager_notification_requests_total": requests[integration, default: 0] += value
            case "alertmanager_notification_requests_failed_total": requestsFailed[integration, default: 0] += value
            case "alertmanager_notification_latency_seconds_count": answered[integration, default: 0] += value
            default: continue
            }
        }
    }

    /// What happened on `integration` since `before`. A request is counted when it starts and
    /// its failure once its answer came, so only an answered request that did not fail says it
    /// worked; a notification fails for good (notifications_failed) only when Alertmanager stops
    /// retrying it: at once for a 4xx such as Slack's 404, after its retries for a 5xx or 429.
    public struct Outcome: Sendable, Equatable {
        public var succeeded: Double
        public var failedRequests: Double
        public var failedNotifications: Double
    }

    public func since(_ before: NotificationCounters, integration i: String) -> Outcome {
        func d(_ k: KeyPath<NotificationCounters, [String: Double]>) -> Double { max(0, (self[keyPath: k][i] ?? 0) - (before[keyPath: k][i] ?? 0)) }
        let failedRequests = d(\.requestsFailed)
        return Outcome(succeeded: max(0, d(\.answered) - failedRequests), failedRequests: failedRequests, failedNotifications: d(\.notificationsFailed))
    }
}

/// One receiver's path, as the last check found it.
public struct ReceiverCheck: Sendable, Codable, Equatable {
    public enum State: String, Sendable, Codable { case delivered, failed, notRouted = "not-routed", noAttempt = "no-attempt", unknown }
    public var receiver: String
    public var integration: String
    public var state: State
    /// Why, in a line: the failure, where the alert went instead, or why nothing is known.
    public var detail: String
    public var checkedAt: Date
    public var up: Bool { state == .delivered }
}

/// The result of one `drctl alerts check`.
public struct AlertPathReport: Sendable, Codable, Equatable {
    public var alertmanager: String
    /// Whether Alertmanager answered; when not, every receiver is `unknown`, not "broken".
    public var alertmanagerUp: Bool
    public var error: String?
    public var receivers: [ReceiverCheck]
    public var checkedAt: Date
    public var healthy: Bool { alertmanagerUp && receivers.allSatisfy(\.up) }
}

/// Sends a uniquely labelled test alert to each receiver through Alertmanager (the rendered
/// route takes `drctl_check_receiver=<name>` to that receiver only) and confirms delivery from
/// Alertmanager's own counters for the receiver's integration. Receivers are checked one after
/// another, so a failure is the checked receiver's; two receivers sharing an integration are
/// told apart only by that order (another alert notifying on it at the same moment can blur it).
public struct AlertPathCheck: Sendable {
    public let policy: AlertingPolicy
    public let api: any AlertmanagerAPI
    public let alertmanager: String
    public var namespace = "drctl"
    public var runbookBase = "runbooks"
    /// How long to wait for Alertmanager to route and attempt each notification.
    public var timeout: TimeInterval = 60
    public var poll: TimeInterval = 0.5
    public var clock: @Sendable () -> Date = Date.init
    public var sleep: @Sendable (TimeInterval) -> Void = { Thread.sleep(forTimeInterval: $0) }

    public init(policy: AlertingPolicy, api: any AlertmanagerAPI, alertmanager: String) {
        self.policy = policy; self.api = api; self.alertmanager = alertmanager
        // A read-back URL may carry its service's key: never shown.
        KnownSecrets.shared.add(policy.receivers.compactMap(\.readBack))
    }

    /// The AlertmanagerConfig drctl renders (its name; its namespace is `namespace`).
    public var configName = "drctl"

    /// Alertmanager's receiver name for ours: the Prometheus Operator names an AlertmanagerConfig's
    /// receivers `<namespace>/<config>/<name>`; a hand-written configuration uses the name.
    func matches(_ routed: String, _ receiver: String) -> Bool { routed == receiver || routed == "\(namespace)/\(configName)/\(receiver)" }

    /// The report when Alertmanager stopped answering: `checked` so far, the rest `unknown`.
    /// Mid-run, the receiver being checked is the one it did not answer for; those after it
    /// were not checked.
    func unanswered(_ error: any Error, checked: [ReceiverCheck], midRun: Bool, started: Date) -> AlertPathReport {
        let why = KnownSecrets.shared.redactor.redact("\(error)")
        let rest = policy.receivers.dropFirst(checked.count).enumerated().map { i, r in
            ReceiverCheck(receiver: r.name.value, integration: r.integration, state: .unknown,
                          detail: midRun && i > 0 ? "not checked: Alertmanager did not answer" : "Alertmanager did not answer: \(why)", checkedAt: clock())
        }
        return AlertPathReport(alertmanager: alertmanager, alertmanagerUp: false, error: why, receivers: checked + rest, checkedAt: started)
    }

    public func run(progress: (String) -> Void = { _ in }) -> AlertPathReport {
        let started = clock()
        var out: [ReceiverCheck] = []
        var before: NotificationCounters
        do {
            before = NotificationCounters(parsing: try api.metrics())
        } catch {
            return unanswered(error, checked: [], midRun: false, started: started)
        }
        var posted: [PostedAlert] = []
        // Resolved once every receiver is checked: a resolved notification to one receiver must
        // not land in the next one's window.
        defer {
            let end = clock()
            try? api.post(posted.map { var a = $0; a.endsAt = end; return a })
        }
        for r in policy.receivers {
            let name = r.name.value
            let id = UUID().uuidString.lowercased()
            let now = clock()
            let alert = PostedAlert(labels: ["alertname": Alerts.checkAlertName, Alerts.checkReceiverLabel: name, "drctl_check_id": id,
                                             "namespace": namespace, "severity": "none"],
                                    annotations: ["summary": "drctl alert path check of receiver \(name) (no action needed)",
                                                  "description": "A test alert drctl alerts check sends through Alertmanager to prove \(name) receives alerts.",
                                                  "runbook_url": "\(runbookBase)/DrctlAlertRouteBroken.md"],
                                    // Firing until the whole check is over (resolved then), however many receivers.
                                    startsAt: now, endsAt: now.addingTimeInterval(300 + Double(policy.receivers.count) * timeout * 2))
            progress("\(name): test alert \(id) posted")
            var result: ReceiverCheck
            do {
                try api.post([alert])
                posted.append(alert)
                result = try waitForOutcome(name, r.integration, id: id, since: before, deadline: now.addingTimeInterval(timeout))
                // The next receiver's baseline; unread, the last one stands (an empty one would
                // make every notification Alertmanager ever sent count as the next receiver's).
                if let text = try? api.metrics() { before = NotificationCounters(parsing: text) }
            } catch {
                let report = unanswered(error, checked: out, midRun: true, started: started)
                if let this = report.receivers.dropFirst(out.count).first { progress("\(name): \(this.state.rawValue): \(this.detail)") }
                return report
            }
            if result.state == .delivered, let url = r.readBack {
                result = receipt(result, id: id, url: url, deadline: clock().addingTimeInterval(timeout))
            }
            progress("\(name): \(result.state.rawValue)\(result.detail.isEmpty ? "" : ": " + result.detail)")
            out.append(result)
        }
        return AlertPathReport(alertmanager: alertmanager, alertmanagerUp: true, error: nil, receivers: out, checkedAt: started)
    }

    /// Alertmanager says delivered: the receipt, read back from the receiver, must say so too
    /// (a proxy answering 200 and dropping the alert is no delivery).
    func receipt(_ r: ReceiverCheck, id: String, url: String, deadline: Date) -> ReceiverCheck {
        var r = r
        var last = ""
        while true {
            do {
                if try api.readBack(url).contains(id) {
                    r.detail = "receipt read back"
                    return r
                }
                last = "the test alert \(id) is not in what it received"
            } catch {
                last = "reading it back failed: \(KnownSecrets.shared.redactor.redact("\(error)"))"
            }
            if clock() >= deadline {
                r.state = .failed
                r.detail = "Alertmanager counts it delivered, but \(last) within \(Int(timeout)) s"
                r.checkedAt = clock()
                return r
            }
            sleep(poll)
        }
    }

    func waitForOutcome(_ name: String, _ integration: String, id: String, since before: NotificationCounters, deadline: Date) throws -> ReceiverCheck {
        var routed: [String]?
        var seenSuccess = false
        while true {
            if routed == nil || !(routed ?? []).contains(where: { matches($0, name) }) {
                routed = try api.receivers(ofAlertLabelled: "drctl_check_id", id)
            }
            if let routed, !routed.contains(where: { matches($0, name) }) {
                return ReceiverCheck(receiver: name, integration: integration, state: .notRouted,
                                     detail: "no route takes drctl's alerts to \(name): Alertmanager sent the test alert to \(routed.isEmpty ? "no receiver" : routed.joined(separator: ", "))",
                                     checkedAt: clock())
            }
            let o = NotificationCounters(parsing: try api.metrics()).since(before, integration: integration)
            // A failure first (the counters are the integration's, not the receiver's: a failure
            // wins over another notification's success); a success only once it held for a poll,
            // as a request's answer is counted before its failure.
            if o.failedNotifications > 0 {
                return ReceiverCheck(receiver: name, integration: integration, state: .failed,
                                     detail: "\(integration) notification failed (\(Int(o.failedRequests)) failed requests, not retried further; Alertmanager's log has the answer, e.g. a 404 for a revoked Slack webhook)",
                                     checkedAt: clock())
            }
            if o.succeeded > 0 && o.failedRequests == 0 {
                if seenSuccess {
                    return ReceiverCheck(receiver: name, integration: integration, state: .delivered, detail: "", checkedAt: clock())
                }
                seenSuccess = true
            }
            if clock() >= deadline {
                if o.succeeded > 0 {
                    return ReceiverCheck(receiver: name, integration: integration, state: .delivered,
                                         detail: o.failedRequests > 0 ? "after \(Int(o.failedRequests)) failed requests" : "", checkedAt: clock())
                }
                if o.failedRequests > 0 {
                    return ReceiverCheck(receiver: name, integration: integration, state: .failed,
                                         detail: "\(integration): \(Int(o.failedRequests)) requests failed in \(Int(timeout)) s and none succeeded (Alertmanager still retries)", checkedAt: clock())
                }
                return ReceiverCheck(receiver: name, integration: integration, state: routed == nil ? .unknown : .noAttempt,
                                     detail: routed == nil ? "Alertmanager did not list the test alert within \(Int(timeout)) s"
                                                           : "routed to \(name), but Alertmanager made no \(integration) notification within \(Int(timeout)) s (silenced, inhibited, or a long group_wait)",
                                     checkedAt: clock())
            }
            sleep(poll)
        }
    }
}

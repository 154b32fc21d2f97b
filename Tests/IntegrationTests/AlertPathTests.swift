import Foundation
import Testing
import TestSupport

/// Tests/Alerting/webhook_sink.py: answers each path with the status it is told, keeps what it got.
final class WebhookSink {
    let pid: pid_t
    let port: Int
    var base: String { "http://127.0.0.1:\(port)" }

    init() throws {
        let portFile = tempPath("sink-port")
        pid = try spawn("/usr/bin/python3", [packageRoot.appendingPathComponent("Tests/Alerting/webhook_sink.py").path, "--port-file", portFile])
        var p: Int?
        for _ in 0..<200 {
            if let s = try? String(contentsOfFile: portFile, encoding: .utf8), let n = Int(s) { p = n; break }
            usleep(25_000)
        }
        unlink(portFile)
        guard let p else { stop(pid); throw FixtureError(description: "webhook sink did not start") }
        port = p
    }
    deinit { stop(pid) }

    func answer(_ path: String, _ status: Int) throws {
        let (st, out) = try run("/usr/bin/curl", ["-s", "-m", "5", "-X", "POST", "-d", "{\"path\": \"\(path)\", \"status\": \(status)}", "\(base)/__status"])
        guard st == 0 else { throw FixtureError(description: "sink: \(out)") }
    }

    /// The bodies received on `path`, oldest first.
    func received(_ path: String) throws -> [String] {
        let (_, out) = try run("/usr/bin/curl", ["-s", "-m", "5", "\(base)/__received"])
        let items = ((try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])?["items"] as? [[String: Any]]) ?? []
        return items.filter { $0["path"] as? String == path }.compactMap { $0["body"] as? String }
    }
}

/// Debian's prometheus-alertmanager (0.25) running the configuration the Prometheus Operator
/// would make of drctl's rendered AlertmanagerConfig (Tests/Alerting/operator_alertmanager_config.py).
final class Alertmanager {
    let dir: String
    let port: Int
    var pid: pid_t = 0
    var url: String { "http://127.0.0.1:\(port)" }

    init(config cr: String, secrets: [String: [String: String]]) throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/prometheus-alertmanager"), "prometheus-alertmanager missing: run scripts/install-deps.sh")
        dir = try testWorkDirectory()
        port = try freePort()
        try JSONSerialization.data(withJSONObject: secrets).write(to: URL(fileURLWithPath: dir + "/secrets.json"))
        let (st, out) = try run(toolsPython, [packageRoot.appendingPathComponent("Tests/Alerting/operator_alertmanager_config.py").path,
                                              cr, dir + "/secrets.json", dir + "/alertmanager.yml"])
        try #require(st == 0, "\(out)")
        try start()
    }

    func start() throws {
        pid = try spawn("/usr/bin/prometheus-alertmanager", ["--config.file=\(dir)/alertmanager.yml", "--storage.path=\(dir)/data",
                                                              "--web.listen-address=127.0.0.1:\(port)", "--cluster.listen-address="],
                        output: dir + "/alertmanager.log")
        let up = try waitUntil(200, every: 50_000) { try run("/usr/bin/curl", ["-sf", "-m", "2", "\(url)/-/ready"]).0 == 0 }
        try #require(up, "alertmanager did not start: \((try? String(contentsOfFile: dir + "/alertmanager.log", encoding: .utf8)) ?? "")")
    }

    func stop() { if pid > 0 { TestSupport.stop(pid, grace: 10); pid = 0 } }
    var log: String { (try? String(contentsOfFile: dir + "/alertmanager.log", encoding: .utf8)) ?? "" }

    /// Posts an alert as Prometheus would (its rule's labels and annotations).
    func fire(_ labels: [String: String], annotations: [String: String] = [:]) throws {
        let body = try JSONSerialization.data(withJSONObject: [["labels": labels, "annotations": annotations]])
        let (st, out) = try run("/usr/bin/curl", ["-sf", "-m", "5", "-H", "Content-Type: application/json", "-d", String(decoding: body, as: UTF8.self), "\(url)/api/v2/alerts"])
        guard st == 0 else { throw FixtureError(description: "POST /api/v2/alerts: \(out)") }
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// drctl's alert path against a real Alertmanager and a webhook sink standing in for Slack and a
/// heartbeat service: the guide's broken Slack (404) found, a healthy path confirmed by the
/// receipt, Alertmanager down reported as down.
@Suite(.serialized) struct AlertPathTests {
    /// Policies with an Alerting kind whose Slack and heartbeat receivers are paths of `sink`,
    /// rendered; returns (policies dir, rendered AlertmanagerConfig, secrets).
    static func rendered(_ sink: WebhookSink, work: String) throws -> (String, String, [String: [String: String]]) {
        let policies = work + "/policies"
        try FileManager.default.createDirectory(atPath: policies, withIntermediateDirectories: true)
        try """
            apiVersion: drctl.dev/v1alpha1
            kind: ObjectStore
            metadata: {name: rgw}
            spec:
              endpoint: http://127.0.0.1:9
              bucket: backups
              credentials: {secretName: s3}
            ---
            apiVersion: drctl.dev/v1alpha1
            kind: Alerting
            metadata: {name: alerts}
            spec:
              statusPage: https://drctl.example/
              checkSchedule: "*/3 * * * * *"
              receivers:
                - name: slack-platform
                  slack: {channel: "#platform-alerts", apiURL: {secretName: slack-webhook, key: url}}
                - name: heartbeat
                  watchdog: true
                  webhook: {url: \(sink.base)/heartbeat}
                  readBack: \(sink.base)/__received
            """.write(toFile: policies + "/p.yaml", atomically: true, encoding: .utf8)
        let out = work + "/rendered"
        let (st, text) = try run(drctlBinary, ["render", policies, "--out", out])
        try #require(st == 0, "\(text)")
        return (policies, out + "/alertmanager/alertmanagerconfig-drctl.yaml", ["slack-webhook": ["url": "\(sink.base)/slack"]])
    }

    static func check(_ policies: String, _ am: Alertmanager, timeout: Int = 20) throws -> (Int32, [String: Any]) {
        let (st, out) = try run(drctlBinary, ["alerts", "check", "--policies", policies, "--alertmanager", am.url, "--timeout", String(timeout), "-o", "json"])
        let obj = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] ?? [:]
        return (st, obj)
    }

    static func states(_ report: [String: Any]) -> [String: String] {
        Dictionary(uniqueKeysWithValues: (report["receivers"] as? [[String: Any]] ?? []).map { ($0["receiver"] as? String ?? "", $0["state"] as? String ?? "") })
    }

    @Test func aBrokenSlackIsFoundAHealthyPathConfirmedAndADownAlertmanagerNamed() throws {
        let work = try testWorkDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let sink = try WebhookSink()
        let (policies, cr, secrets) = try Self.rendered(sink, work: work)
        let am = try Alertmanager(config: cr, secrets: secrets)

        // The guide's "Slack Integration: BROKEN (webhook 404)".
        try sink.answer("/slack", 404)
        var (st, report) = try Self.check(policies, am)
        #expect(st == 1, "\(report)")
        #expect(Self.states(report) == ["slack-platform": "failed", "heartbeat": "delivered"], "\(report)")
        #expect(am.log.contains("unexpected status code 404"), "Alertmanager's own log agrees: \(am.log)")
        let details = Dictionary(uniqueKeysWithValues: (report["receivers"] as? [[String: Any]] ?? []).map { ($0["receiver"] as? String ?? "", $0["detail"] as? String ?? "") })
        #expect(details["heartbeat"] == "receipt read back", "drctl read the heartbeat's receipt itself: \(report)")
        // The receipt: the heartbeat got the check alert meant for it, and only that one.
        let beats = try sink.received("/heartbeat")
        #expect(beats.count >= 1 && beats.allSatisfy { $0.contains("\"drctl_check_receiver\":\"heartbeat\"") }, "\(beats)")

        // Slack mended: both delivered, and the Slack message links the runbook and the status page.
        try sink.answer("/slack", 200)
        (st, report) = try Self.check(policies, am)
        #expect(st == 0 && Self.states(report) == ["slack-platform": "delivered", "heartbeat": "delivered"], "\(report)")
        let slack = try sink.received("/slack")
        #expect(slack.contains { $0.contains("Runbook: runbooks/DrctlAlertRouteBroken.md") && $0.contains("Status page: https://drctl.example/") }, "\(slack)")

        // drctl serve checks on the policy's schedule (every 3 s here): the 404 turns the metric and
        // the page's alerts line red within one interval; mended, green again.
        try sink.answer("/slack", 404)
        let creds = work + "/creds"
        try FileManager.default.createDirectory(atPath: creds, withIntermediateDirectories: true)
        try "AKIDEXAMPLE".write(toFile: creds + "/ACCESS_KEY_ID", atomically: true, encoding: .utf8)
        try "not-a-real-secret".write(toFile: creds + "/SECRET_ACCESS_KEY", atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["DRCTL_CREDENTIALS_DIR"] = creds
        env["DRCTL_DATA_DIR"] = work + "/data"
        do {
            let serve = try ServeTests.Service(["--policies", policies, "--alertmanager", am.url], env: env, log: work + "/serve.log")
            let route = "drctl_alert_route_up{receiver=\"slack-platform\",integration=\"slack\"}"
            let red = try waitUntil(200, every: 100_000) { try serve.metric(route) == 0 }
            #expect(red, "\(serve.text())")
            #expect(try serve.metric("drctl_alert_route_up{receiver=\"heartbeat\",integration=\"webhook\"}") == 1)
            let page = try serve.get("/").1
            #expect(page.contains("class=\"alerts broken\"") && page.contains("<b>slack-platform</b> (slack) failed"), "\(page)")
            try sink.answer("/slack", 200)
            let green = try waitUntil(200, every: 100_000) { try serve.metric(route) == 1 }
            #expect(green, "\(serve.text())")
            #expect(try serve.get("/").1.contains("class=\"alerts protected\""))
        }

        // A real drctl alert as its rule labels it goes to Slack; the watchdog to the heartbeat
        // only; DrctlAlertRouteBroken for the heartbeat goes to the other receiver, Slack. An alert
        // without the namespace label falls to the root's null receiver: why every rule carries it.
        let slackBefore = try sink.received("/slack").count, beatsBefore = try sink.received("/heartbeat").count
        try am.fire(["alertname": "DrctlBackupMissing", "workload": "n8n-prod", "kind": "cnpg", "source": "n8n-postgres", "severity": "critical", "namespace": "drctl"],
                    annotations: ["summary": "No recent base backup", "runbook_url": "runbooks/DrctlBackupMissing.md"])
        try am.fire(["alertname": "DrctlWatchdog", "severity": "none", "namespace": "drctl"])
        try am.fire(["alertname": "DrctlAlertRouteBroken", "receiver": "heartbeat", "integration": "webhook", "severity": "critical", "namespace": "drctl"])
        try am.fire(["alertname": "DrctlRPOBreached", "workload": "unlabelled", "severity": "critical"])
        let routed = try waitUntil(150, every: 200_000) {
            let s = try sink.received("/slack").dropFirst(slackBefore), b = try sink.received("/heartbeat").dropFirst(beatsBefore)
            return s.contains { $0.contains("DrctlBackupMissing") } && s.contains { $0.contains("DrctlAlertRouteBroken") } && b.contains { $0.contains("DrctlWatchdog") }
        }
        let (gotSlack, gotBeats) = (try sink.received("/slack").dropFirst(slackBefore), try sink.received("/heartbeat").dropFirst(beatsBefore))
        #expect(routed, "slack: \(gotSlack); heartbeat: \(gotBeats)")
        usleep(1_000_000)
        let s = try sink.received("/slack").dropFirst(slackBefore), b = try sink.received("/heartbeat").dropFirst(beatsBefore)
        #expect(!s.contains { $0.contains("DrctlWatchdog") }, "the watchdog goes to the heartbeat only")
        #expect(!b.contains { $0.contains("DrctlBackupMissing") || $0.contains("DrctlAlertRouteBroken") }, "\(b)")
        #expect(!(s + b).contains { $0.contains("unlabelled") }, "an alert without namespace=drctl is not drctl's route's")

        // Alertmanager down: reported as down (exit 5), not as broken routes.
        am.stop()
        (st, report) = try Self.check(policies, am)
        #expect(st == 5 && report["alertmanagerUp"] as? Bool == false, "\(report)")
        #expect(Set(Self.states(report).values) == ["unknown"], "\(report)")
    }
}

import AlertPath
import ArgumentParser
import Foundation
import Policy
import Support

struct AlertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alerts",
        abstract: "Prove drctl's alerts reach someone.",
        subcommands: [AlertsCheckCommand.self])
}

struct AlertsCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Send a test alert through Alertmanager to each receiver of the Alerting policy and confirm it was delivered.",
        discussion: """
            For each receiver in turn, posts a uniquely labelled alert (DrctlAlertPathCheck, \
            drctl_check_receiver=<receiver>) to Alertmanager's v2 API; the rendered \
            AlertmanagerConfig routes it to that receiver only. Delivery is read from \
            Alertmanager's own counters for the receiver's integration \
            (alertmanager_notification_requests_total, _failed_total and the notifications_* pair). \
            The test alert is resolved afterwards. A receiver is delivered, failed (Slack answering \
            404, a webhook refusing), not-routed (the route does not reach it), no-attempt, or \
            unknown (Alertmanager did not answer). \
            Exit status: 0 every receiver delivered; 1 a receiver failed or is not reached; \
            5 Alertmanager did not answer (the path is unknown, not broken).
            """)

    @Option(help: ArgumentHelp("Policy files or directories.", valueName: "path")) var policies: [String] = ["policies"]
    @Option(help: ArgumentHelp("Alertmanager's base URL (default: the Alerting policy's spec.alertmanager).", valueName: "url"))
    var alertmanager: String?
    @Option(help: ArgumentHelp("Seconds to wait for each receiver's notification.", valueName: "seconds")) var timeout = 60.0
    @Option(help: ArgumentHelp("Namespace label of the test alert: the AlertmanagerConfig's namespace.", valueName: "namespace")) var namespace = "drctl"
    @Option(name: [.short, .long], help: "Output format: table or json.") var output: OutputFormat = .table

    static let unreachable = ExitCode(5)

    func run() throws {
        try runReportingErrors {
            let set = try loadCheckedPolicies(policies)
            guard let policy = set.alerting else {
                throw ConfigError("no kind: Alerting in \(policies.joined(separator: ", ")): name the receivers drctl's alerts go to")
            }
            guard let url = alertmanager ?? policy.alertmanager?.value else {
                throw ValidationError("give --alertmanager URL or spec.alertmanager in Alerting \(policy.name.value)")
            }
            var check = AlertPathCheck(policy: policy, api: AlertmanagerClient(base: url), alertmanager: url)
            check.timeout = timeout
            check.namespace = namespace
            let quiet = output == .json
            let report = check.run { if !quiet { FileHandle.standardError.write(Data("\($0)\n".utf8)) } }
            switch output {
            case .json:
                try printJSON(report)
            case .table:
                if !report.alertmanagerUp { print("Alertmanager \(url): DOWN (\(report.error ?? "no answer")); the receivers' paths are unknown") }
                printTable([["RECEIVER", "INTEGRATION", "STATE", "DETAIL"]] + report.receivers.map { [$0.receiver, $0.integration, $0.state.rawValue, $0.detail] })
            }
            if !report.alertmanagerUp { throw Self.unreachable }
            if !report.healthy { throw Exit.failure }
        }
    }
}

import ArgumentParser
import Foundation
import Catalog
import Policy

struct LintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lint",
        abstract: "Check policy files and report every problem as file:line:col.",
        discussion: """
            Checks syntax, field names (with suggestions for misspellings), cron expressions for the \
            tool that will run them (five fields for Velero, six for CNPG), whether schedules and \
            retention can meet the RPO, references between policies, clusters sharing one barman \
            archive, and prefixes inside Velero's. With --measured, also whether each database's \
            base-backup schedule can meet the RTO at the WAL rate its archive shows and the rates \
            its drills measured, naming the schedule that would. Exit status 1 when there is any error.
            """)

    @Argument(help: ArgumentHelp("Policy files or directories.", valueName: "path")) var paths: [String] = ["policies"]
    @Option(name: [.short, .long], help: "Output format: table (file:line:col lines) or json.") var output: OutputFormat = .table
    @Flag(help: "Also judge each database's base-backup schedule against its RTO with what was measured: the drills' fetch and replay rates and the archive's WAL rate (reads the stores, through the catalog when given).")
    var measured = false
    @OptionGroup var s3: S3Options
    @Option(help: ArgumentHelp("With --measured: the catalog to read the stores' backups from instead of the stores.", valueName: "file")) var catalog: String?

    func run() throws {
        let diags = Diagnostics()
        let set = PolicyLoader.load(paths: paths, diagnostics: diags)
        Linter.lint(set, into: diags)
        if measured && !diags.hasErrors { try measuredScheduleWarnings(set, s3: s3, catalog: catalog, into: diags) }
        let sorted = diags.sorted
        switch output {
        case .table:
            for d in sorted { print(d) }
        case .json:
            let items = sorted.map { d in
                ["file": d.location.file, "line": d.location.line, "column": d.location.column,
                 "severity": d.severity.rawValue, "message": d.message] as [String: Any]
            }
            let data = try JSONSerialization.data(withJSONObject: items, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
        let errors = sorted.filter { $0.severity == .error }.count
        let summary = "\(errors) error\(errors == 1 ? "" : "s"), \(sorted.count - errors) warning\(sorted.count - errors == 1 ? "" : "s") in \(set.objectStores.count + set.backupPolicies.count) policies"
        FileHandle.standardError.write(Data("\(summary)\n".utf8))
        if errors > 0 { throw Exit.failure }
    }
}

/// `--measured`: each database's base-backup schedule judged against its RTO with the same model
/// as drctl status's prediction (the drills' rates, the archive's WAL rate), as warnings at the schedule.
func measuredScheduleWarnings(_ set: PolicySet, s3: S3Options, catalog: String?, into diags: Diagnostics) throws {
    let evaluated = try evaluateWorkloads(set.backupPolicies, in: set, open: try s3.opener(copy: nil),
                                          catalog: try catalog.map { try CatalogStore(path: $0) }, now: Date())
    for e in evaluated {
        for advice in e.status.rtoAdvice ?? [] {
            let cluster = e.policy.cnpg.first { advice.hasPrefix($0.cluster.value + ": ") }
            diags.warning(cluster?.schedule.location ?? e.policy.rto.location, "spec.cnpg[].baseBackup.schedule: \(advice)")
        }
    }
}

import ArgumentParser
import Catalog
import Foundation
import Policy
import Report
import Support

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Report, over a window, how much of the time each workload met its RPO objective, its drills and RTOs, and the guide's uptime phases against what was measured.",
        discussion: """
            Reads the catalog: the RPO history drctl serve (and drctl status --catalog) record, each \
            measurement holding until the next, and the drills. Per workload: the share of measured \
            time the RPO objective was met, the breaches and the longest with its cause, drills passed \
            of run, the RTO p50/p95 of passed drills against the objective, the copies' lag. Then the \
            "Current Backup Status" table and the guide's expected uptime per phase against the \
            measured share of time every workload met its RPO at once.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var s3: S3Options
    @Option(help: ArgumentHelp("Policy files or directories.", valueName: "path")) var policies: [String] = ["policies"]
    @Option(help: ArgumentHelp("The window: this long before now (e.g. 30d, 12h, 2w).", valueName: "span")) var since = "30d"
    @Option(help: ArgumentHelp("The catalog file (default: $DRCTL_DATA_DIR/catalog.sqlite, else ~/.local/share/drctl/catalog.sqlite).", valueName: "file"))
    var catalog: String?
    @Flag(help: "Do not read the stores' copies for their lag.") var skipCopies = false
    @Option(name: [.short, .long], help: "Output format: markdown, json or html.") var output: Format = .markdown
    @Option(help: ArgumentHelp("Write the report to this file instead of standard output.", valueName: "file")) var out: String?

    enum Format: String, ExpressibleByArgument, CaseIterable { case markdown, json, html }

    var window: TimeSpan {
        get throws {
            guard let t = TimeSpan(dialect: .commandLine, since), t.seconds > 0 else { throw ValidationError("--since '\(since)': expected a duration such as 30d, 12h or 2w") }
            return t
        }
    }

    func validate() throws { _ = try window }

    func run() throws {
        global.bootstrapLogging()
        try runReportingErrors {
            let set = try loadCheckedPolicies(policies)
            let path = catalog ?? defaultCatalogPath()
            guard FileManager.default.fileExists(atPath: path) else {
                throw ConfigError("no catalog at \(path) (--catalog): drctl serve or drctl catalog sync makes it, and drctl serve records the RPO history")
            }
            let db = try CatalogStore(path: path)
            let now = Date()
            let open = try s3.opener(copy: nil)
            let copies: CopyOpener? = skipCopies ? nil : s3.copyOpener
            let statuses = try evaluateWorkloads(set.backupPolicies, in: set, open: open, catalog: db, now: now, copies: copies).map(\.status)
            let report = try UptimeReport.from(catalog: db, set: set, statuses: statuses, since: now.addingTimeInterval(-Double(try window.seconds)), now: now)
            let text: String
            switch output {
            case .markdown: text = ReportRendering.markdown(report)
            case .html: text = ReportRendering.html(report)
            case .json: text = String(decoding: try prettyJSONEncoder().encode(report), as: UTF8.self) + "\n"
            }
            if let out {
                try Data(text.utf8).write(to: URL(fileURLWithPath: out), options: .atomic)
                FileHandle.standardError.write(Data("wrote \(out)\n".utf8))
            } else {
                print(text, terminator: "")
            }
        }
    }
}

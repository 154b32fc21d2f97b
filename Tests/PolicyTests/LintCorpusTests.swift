import Foundation
import Support
import Testing
@testable import Policy

let fixtures = Bundle.module.resourceURL!.appendingPathComponent("Fixtures")
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Each directory under Fixtures/lint breaks one rule. Its files say what they must produce
/// with `# expect LINE:COL severity: text` lines; lint must report exactly those.
struct LintCorpusTests {
    static let cases: [String] = ((try? FileManager.default.contentsOfDirectory(atPath: fixtures.appendingPathComponent("lint").path)) ?? []).sorted()

    struct Expectation: CustomStringConvertible {
        var file: String, line: Int, column: Int, severity: String, text: String
        var description: String { "\((file as NSString).lastPathComponent):\(line):\(column): \(severity): \(text)" }
    }

    static func expectations(in dir: URL) throws -> [Expectation] {
        var out: [Expectation] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
            let path = dir.appendingPathComponent(name).path
            for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") where line.hasPrefix("# expect ") {
                let rest = line.dropFirst("# expect ".count)
                let parts = rest.split(separator: " ", maxSplits: 2)
                let pos = parts[0].split(separator: ":")
                out.append(Expectation(file: path, line: Int(pos[0])!, column: Int(pos[1])!,
                                       severity: String(parts[1].dropLast()), text: String(parts[2])))
            }
        }
        return out
    }

    @Test("each broken policy yields exactly its expected diagnostics", arguments: cases)
    func corpus(name: String) throws {
        let dir = fixtures.appendingPathComponent("lint").appendingPathComponent(name)
        let expected = try Self.expectations(in: dir)
        #expect(!expected.isEmpty, "fixture \(name) declares no expectations")
        let diags = Diagnostics()
        Linter.lint(PolicyLoader.load(paths: [dir.path], diagnostics: diags), into: diags)
        var unmatched = diags.all
        for e in expected {
            let i = unmatched.firstIndex {
                $0.location.file == e.file && $0.location.line == e.line && $0.location.column == e.column
                    && $0.severity.rawValue == e.severity && $0.message.contains(e.text)
            }
            #expect(i != nil, "missing: \(e)\n got: \(diags.all)")
            if let i { unmatched.remove(at: i) }
        }
        #expect(unmatched.isEmpty, "unexpected: \(unmatched)")
    }

    @Test func corpusCoversEveryRule() {
        #expect(Set(Self.cases).isSuperset(of: ["unknown-field", "cnpg-five-field-cron", "velero-six-field-cron", "rpo-velero-only",
                                                "rpo-archive-timeout", "retention-too-short", "shared-barman-archive",
                                                "prefix-inside-velero", "missing-object-store", "duplicate-names",
                                                "copy-unknown-store", "copy-onto-itself", "copy-lag-looser-than-rpo", "compression-drctl-cannot-read", "copy-bad-recipient",
                                                "depends-on-cycle", "rehearsal-from-not-a-copy"]))
    }

    @Test func shippedPoliciesAreClean() {
        let diags = Diagnostics()
        let set = PolicyLoader.load(paths: [repoRoot.appendingPathComponent("policies").path], diagnostics: diags)
        Linter.lint(set, into: diags)
        #expect(diags.all.isEmpty, "\(diags.all)")
        #expect(Set(set.backupPolicies.map(\.name.value)).isSuperset(of: ["cluster", "n8n-prod", "keycloak", "audiobookshelf"]))
        let n8n = set.backupPolicies.first { $0.name.value == "n8n-prod" }!
        #expect(n8n.rpo.value == TimeSpan(dialect: .policy, "5m")! && n8n.rto.value == TimeSpan(dialect: .policy, "1h")!)
        #expect(n8n.cnpg.first?.cluster.value == "n8n-postgres")
        #expect(n8n.cnpg.first?.schedule.value.longestGap == 86400)
    }

    @Test func invalidYAMLIsReportedWithItsPosition() {
        let diags = Diagnostics()
        var set = PolicySet()
        PolicyLoader.load(text: "apiVersion: drctl.dev/v1alpha1\nkind: [unclosed\n", file: "bad.yaml", into: &set, diagnostics: diags)
        #expect(diags.all.count == 1)
        #expect(diags.all.first?.location.file == "bad.yaml" && diags.all.first!.location.line >= 2)
    }

    /// libyaml places an error at the end of a file without a final newline on a line that does
    /// not exist; drctl points at the end of the last line (found by drctl-fuzz policy).
    @Test func anErrorAtTheEndIsOnTheLastLine() {
        for (text, line, column) in [("a: b\nc", 2, 2), ("a: b\rc", 2, 2), ("a: b\r\ncd", 2, 3)] {
            let diags = Diagnostics()
            var set = PolicySet()
            PolicyLoader.load(text: text, file: "end.yaml", into: &set, diagnostics: diags)
            let at = diags.all.first { $0.message.hasPrefix("invalid YAML") }?.location
            #expect(at?.line == line && at?.column == column, "\(text.debugDescription): \(diags.all)")
        }
    }
}

struct DurationAndCronTests {
    @Test func durations() {
        #expect(TimeSpan(dialect: .policy, "30m")?.seconds == 1800)
        #expect(TimeSpan(dialect: .policy, "24h")?.seconds == 86400)
        #expect(TimeSpan(dialect: .policy, "7d")?.seconds == 7 * 86400)
        #expect(TimeSpan(dialect: .policy, "4w")?.seconds == 28 * 86400)
        #expect(TimeSpan(dialect: .policy, "12mo")?.seconds == 365 * 86400)
        #expect(TimeSpan(dialect: .policy, "12mo")?.goDuration == "8760h0m0s")
        for bad in ["", "7", "d", "-1d", "1.5h", "7days", "0d"] { #expect(TimeSpan(dialect: .policy, bad) == nil, "\(bad)") }
        // Found by drctl-fuzz policy: a number whose seconds overflow trapped; beyond a century is refused.
        for huge in ["00000009170768352868331975h", "9223372036854775807s", "101y"] { #expect(TimeSpan(dialect: .policy, huge) == nil, "\(huge)") }
        #expect(TimeSpan(dialect: .policy, "100y")?.seconds == TimeSpan.maximum)
    }

    @Test func gapsBetweenRuns() throws {
        #expect(try Cron("0 2 * * *", dialect: .standard).longestGap == 86400)
        #expect(try Cron("CRON_TZ=Europe/Berlin 0 3 * * 0", dialect: .standard).longestGap == 7 * 86400)
        #expect(try Cron("0 4 1 * *", dialect: .standard).longestGap == 31 * 86400)
        #expect(try Cron("*/15 * * * *", dialect: .standard).longestGap == 900)
        #expect(try Cron("0 0 4 * * *", dialect: .cnpg).longestGap == 86400)
        // CNPG reads five fields as seconds..month: minute 2 of every hour.
        #expect(try Cron("0 2 * * *", dialect: .cnpg).longestGap == 3600)
        #expect(try Cron("@daily", dialect: .cnpg).longestGap == 86400)
        #expect(try Cron("@every 1h30m", dialect: .standard).longestGap == 5400)
        #expect(try Cron("0 9 * * MON-FRI", dialect: .standard).longestGap == 3 * 86400)
        #expect(try Cron("* * * * * *", dialect: .cnpg).longestGap == 1)
    }

    @Test func nextRuns() throws {
        func t(_ s: String) -> Date { ISO8601DateFormatter().date(from: s)! }
        func next(_ expr: String, _ dialect: Cron.Dialect = .drctl, after: String) throws -> String? {
            try Cron(expr, dialect: dialect).next(after: t(after)).map { ISO8601DateFormatter().string(from: $0) }
        }
        #expect(try next("30 2 * * *", after: "2026-11-27T02:29:59Z") == "2026-11-27T02:30:00Z")
        #expect(try next("30 2 * * *", after: "2026-11-27T02:30:00Z") == "2026-11-28T02:30:00Z", "strictly after")
        #expect(try next("*/20 * * * * *", after: "2026-11-27T10:00:41Z") == "2026-11-27T10:01:00Z")
        #expect(try next("0 0 4 * * *", .cnpg, after: "2026-12-31T05:00:00Z") == "2027-01-01T04:00:00Z")
        // CRON_TZ: 03:00 in Berlin is 02:00 UTC in winter, 01:00 UTC in summer.
        #expect(try next("CRON_TZ=Europe/Berlin 0 3 * * *", after: "2026-11-27T00:00:00Z") == "2026-11-27T02:00:00Z")
        #expect(try next("CRON_TZ=Europe/Berlin 0 3 * * *", after: "2026-07-01T00:00:00Z") == "2026-07-01T01:00:00Z")
        // Day-of-month and day-of-week both restricted: either matches (Friday the 27th, or the 1st).
        #expect(try next("0 6 1 * FRI", after: "2026-11-26T12:00:00Z") == "2026-11-27T06:00:00Z")
        #expect(try next("0 6 31 2 *", after: "2026-01-01T00:00:00Z") == nil, "30/31 February never comes")
        #expect(try next("@every 90s", after: "2026-11-27T10:00:00Z") == "2026-11-27T10:01:30Z")
        #expect(throws: Cron.ParseError.self) { try Cron("* * * *", dialect: .drctl) }
    }

    @Test func invalidCron() {
        for bad in ["0 0 2 * * *", "60 * * * *", "* * 0 * *", "* * * 13 *", "5-1 * * * *", "*/0 * * * *", "CRON_TZ=Mars/Base 0 2 * * *", "@sometimes"] {
            #expect(throws: Cron.ParseError.self, "\(bad)") { try Cron(bad, dialect: .standard) }
        }
    }
}

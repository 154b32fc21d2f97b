import Foundation
import Support

/// The report as Markdown (for a ticket or a wiki) and as a page with SVG charts (no script, no
/// external asset, like the status page).
public enum ReportRendering {
    static func pct(_ v: Double?) -> String { v.map { String(format: "%.2f %%", $0 * 100) } ?? "not measured" }
    static func day(_ d: Date) -> String { String(RFC3339.formatReadable(d).prefix(16)) }
    static func span(_ s: Double) -> String { TimeSpan.humanize(Int(s.rounded())) }
    static func rto(_ w: UptimeReport.Workload) -> String {
        guard let p50 = w.rtoP50Seconds, let p95 = w.rtoP95Seconds else { return "no passed drill" }
        return "\(span(p50)) / \(span(p95)) (objective \(span(Double(w.rtoObjectiveSeconds))))"
    }
    static func copies(_ w: UptimeReport.Workload) -> String {
        w.copies.isEmpty ? "-" : w.copies.map { c in
            c.error.map { "\(c.store): unreadable (\($0))" } ?? "\(c.store): lag \(span(c.lagSeconds ?? 0))\(c.maxLagSeconds.map { " (maxLag \(span(Double($0))))" } ?? "")"
        }.joined(separator: "; ")
    }
    static func measuredLine(_ r: UptimeReport) -> String {
        guard let share = r.uptime.measuredShare else { return "No RPO measurements in the window: run drctl serve (or drctl status --catalog) to record them." }
        return "Every workload met its RPO objective at once \(pct(share)) of the measured time (\(span(r.uptime.breachSeconds)) with at least one in breach, over \(span(r.uptime.measuredSeconds)) measured)."
    }
    static func reached(_ r: UptimeReport) -> String {
        let met = r.uptime.phases.filter(\.met)
        guard r.uptime.measuredShare != nil else { return "" }
        return met.last.map { "Measured backup protection reaches the guide's \($0.phase) estimate (\($0.estimate))." }
            ?? "Measured backup protection is below every phase the guide estimates."
    }

    static func rehearsalResult(_ x: UptimeReport.Rehearsal) -> String {
        x.result != "passed" ? "FAILED (\(x.failed.joined(separator: ", ")) did not come back)" : x.siteRTOSeconds <= Double(x.objectiveSeconds) ? "met" : "EXCEEDED"
    }
    static func criticalPath(_ x: UptimeReport.Rehearsal) -> String {
        x.criticalPath.joined(separator: " -> ") + (x.criticalPhase.map { " (\($0))" } ?? "")
    }
    static func errorText(_ p: UptimeReport.Prediction) -> String {
        String(format: "%+.0f %%", p.error * 100) + (p.withinRange ? "" : " (outside the range)")
    }
    static func predictionLine(_ r: UptimeReport) -> String {
        let within = r.predictions.filter(\.withinRange).count
        let mean = r.predictions.map { abs($0.error) }.reduce(0, +) / Double(r.predictions.count)
        return "\(within) of \(r.predictions.count) drills took a time within their predicted range; mean absolute error \(String(format: "%.0f %%", mean * 100))."
    }

    public static func markdown(_ r: UptimeReport) -> String {
        func cell(_ s: String) -> String { s.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ") }
        var m = "# drctl report: \(day(r.since)) to \(day(r.until)) UTC\n\n"
        m += "## Current Backup Status\n\n| Workload | Method | Schedule | Retention | Last Backup | Status |\n|---|---|---|---|---|---|\n"
        for row in r.backupStatus {
            m += "| \(cell(row.workload)) | \(cell(row.method)) | \(cell(row.schedule)) | \(cell(row.retention)) | \(row.lastBackup.map { day($0) } ?? "never") | \(cell(row.status)) |\n"
        }
        m += "\n## Uptime: the guide's estimates against what was measured\n\n\(measuredLine(r)) \(reached(r))\n\n"
        m += "| Phase | Guide's estimate | Measured \(pct(r.uptime.measuredShare)) |\n|---|---|---|\n"
        for p in r.uptime.phases { m += "| \(p.phase) | \(p.estimate) | \(r.uptime.measuredShare == nil ? "-" : p.met ? "reached" : "not reached") |\n" }
        m += "\n## Workloads\n\n| Workload | RPO met | RPO objective | Breaches (longest) | Drills passed / run | RTO p50 / p95 | Copies |\n|---|---|---|---|---|---|---|\n"
        for w in r.workloads {
            m += "| \(cell(w.workload)) | \(pct(w.rpoMetShare)) | \(span(Double(w.rpoObjectiveSeconds))) | \(w.breaches)\(w.longestBreach.map { " (\(span($0.seconds)))" } ?? "") | "
            m += "\(w.drillsPassed) / \(w.drillsRun) | \(cell(rto(w))) | \(cell(copies(w))) |\n"
        }
        let longest = r.workloads.compactMap { w in w.longestBreach.map { (w.workload, $0) } }
        if !longest.isEmpty {
            m += "\n## Longest breach per workload\n\n"
            for (w, b) in longest {
                m += "- **\(w)**: \(day(b.from)) to \(day(b.to)) UTC (\(span(b.seconds))\(b.worstRPOSeconds.map { ", RPO up to \(span(Double($0)))" } ?? "")): \(b.cause)\n"
            }
        }
        if !r.rehearsals.isEmpty {
            m += "\n## Site rehearsals (drctl rehearse)\n\n| When (UTC) | From | Result | Site RTO / objective | Critical path |\n|---|---|---|---|---|\n"
            for x in r.rehearsals { m += "| \(day(x.at)) | \(cell(x.from)) | \(cell(rehearsalResult(x))) | \(span(x.siteRTOSeconds)) / \(span(Double(x.objectiveSeconds))) | \(cell(criticalPath(x))) |\n" }
        }
        if !r.predictions.isEmpty {
            m += "\n## Predicted against measured RTO\n\n\(predictionLine(r))\n\n| Drill | Workload | Predicted (range) | Measured | Error |\n|---|---|---|---|---|\n"
            for p in r.predictions {
                m += "| \(cell(p.drill)) | \(cell(p.workload)) | \(span(p.predictedSeconds)) (\(span(p.lowSeconds)) to \(span(p.highSeconds))) | \(span(p.measuredSeconds)) | \(errorText(p)) |\n"
            }
        }
        m += "\nMeasured from the RPO history in the catalog: each measurement holds until the next.\n"
        return m
    }

    static func esc(_ s: String) -> String { HTML.escape(s) }

    static let style = """
        body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d232a;background:#fbfbfc;max-width:1100px}
        h1{font-size:1.4em}h2{font-size:1.1em;margin:1.6em 0 .4em}
        table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e3e6ea;vertical-align:top}
        th{font-weight:600;color:#4a5560;font-size:.9em}.met{color:#2e9d4f}.missed{color:#d1342f}.muted{color:#6b7580}
        svg{display:block;width:100%;height:auto;background:#fff;border:1px solid #e3e6ea;margin:.3em 0 1em}
        """

    public static func html(_ r: UptimeReport) -> String {
        var h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">"
        h += "<title>drctl report</title><style>\(style)</style></head><body>\n"
        h += "<h1>drctl report: \(esc(day(r.since))) to \(esc(day(r.until))) UTC</h1>\n"
        h += "<h2>Current Backup Status</h2><table id=\"backup-status\"><thead><tr><th>Workload</th><th>Method</th><th>Schedule</th><th>Retention</th><th>Last Backup</th><th>Status</th></tr></thead><tbody>\n"
        for row in r.backupStatus {
            h += "<tr><td>\(esc(row.workload))</td><td>\(esc(row.method))</td><td>\(esc(row.schedule))</td><td>\(esc(row.retention))</td>"
            h += "<td>\(row.lastBackup.map { esc(day($0)) } ?? "never")</td><td class=\"\(row.status == "PROTECTED" ? "met" : "missed")\">\(esc(row.status))</td></tr>\n"
        }
        h += "</tbody></table>\n<h2>Uptime: the guide's estimates against what was measured</h2>\n"
        h += "<p id=\"measured\">\(esc(measuredLine(r))) \(esc(reached(r)))</p>\n"
        h += uptimeChart(r)
        h += "<h2>RPO objective met, per workload</h2>\n"
        h += rpoChart(r)
        h += "<table id=\"workloads\"><thead><tr><th>Workload</th><th>RPO met</th><th>RPO objective</th><th>Breaches (longest)</th><th>Drills passed / run</th><th>RTO p50 / p95</th><th>Copies</th></tr></thead><tbody>\n"
        for w in r.workloads {
            let cls = (w.rpoMetShare ?? 0) >= 0.999 ? "met" : "missed"
            h += "<tr class=\"workload\" data-workload=\"\(esc(w.workload))\"><td>\(esc(w.workload))</td><td class=\"\(cls)\">\(esc(pct(w.rpoMetShare)))</td><td>\(esc(span(Double(w.rpoObjectiveSeconds))))</td>"
            h += "<td>\(w.breaches)\(w.longestBreach.map { " (\(esc(span($0.seconds))))" } ?? "")</td><td>\(w.drillsPassed) / \(w.drillsRun)</td><td>\(esc(rto(w)))</td><td>\(esc(copies(w)))</td></tr>\n"
        }
        h += "</tbody></table>\n<h2>RTO of passed drills against the objective</h2>\n" + rtoChart(r)
        let longest = r.workloads.compactMap { w in w.longestBreach.map { (w.workload, $0) } }
        if !longest.isEmpty {
            h += "<h2>Longest breach per workload</h2><ul id=\"breaches\">"
            for (w, b) in longest {
                h += "<li><b>\(esc(w))</b>: \(esc(day(b.from))) to \(esc(day(b.to))) UTC (\(esc(span(b.seconds)))): \(esc(b.cause))</li>"
            }
            h += "</ul>\n"
        }
        if !r.rehearsals.isEmpty {
            h += "<h2>Site rehearsals</h2><table id=\"rehearsals\"><thead><tr><th>When (UTC)</th><th>From</th><th>Result</th><th>Site RTO / objective</th><th>Critical path</th></tr></thead><tbody>\n"
            for x in r.rehearsals {
                let ok = x.result == "passed" && x.siteRTOSeconds <= Double(x.objectiveSeconds)
                h += "<tr><td>\(esc(day(x.at)))</td><td>\(esc(x.from))</td><td class=\"\(ok ? "met" : "missed")\">\(esc(rehearsalResult(x)))</td>"
                h += "<td>\(esc(span(x.siteRTOSeconds))) / \(esc(span(Double(x.objectiveSeconds))))</td><td>\(esc(criticalPath(x)))</td></tr>\n"
            }
            h += "</tbody></table>\n"
        }
        if !r.predictions.isEmpty {
            h += "<h2>Predicted against measured RTO</h2><p>\(esc(predictionLine(r)))</p><table id=\"predictions\"><thead><tr><th>Drill</th><th>Workload</th><th>Predicted (range)</th><th>Measured</th><th>Error</th></tr></thead><tbody>\n"
            for p in r.predictions {
                h += "<tr><td>\(esc(p.drill))</td><td>\(esc(p.workload))</td><td>\(esc(span(p.predictedSeconds))) (\(esc(span(p.lowSeconds))) to \(esc(span(p.highSeconds))))</td>"
                h += "<td>\(esc(span(p.measuredSeconds)))</td><td class=\"\(p.withinRange ? "met" : "missed")\">\(esc(errorText(p)))</td></tr>\n"
            }
            h += "</tbody></table>\n"
        }
        h += "<p class=\"muted\">Measured from the RPO history in the catalog: each measurement holds until the next. drctl report.</p></body></html>\n"
        return h
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    /// One lane per workload across the window: green met, red in breach, grey not measured.
    static func rpoChart(_ r: UptimeReport) -> String {
        let left = 140.0, width = 1000.0, lane = 22.0
        let total = max(1, r.until.timeIntervalSince(r.since))
        func x(_ d: Date) -> Double { left + (width - left - 10) * d.timeIntervalSince(r.since) / total }
        let height = Double(r.workloads.count) * lane + 30
        var s = "<svg class=\"rpo\" viewBox=\"0 0 \(f(width)) \(f(height))\" role=\"img\" aria-label=\"RPO objective met over the window\">"
        for (i, w) in r.workloads.enumerated() {
            let y = 8 + Double(i) * lane
            s += "<text x=\"4\" y=\"\(f(y + 13))\" font-size=\"12\">\(esc(w.workload))</text>"
            s += "<rect x=\"\(f(left))\" y=\"\(f(y))\" width=\"\(f(width - left - 10))\" height=\"16\" fill=\"#e3e6ea\"><title>not measured</title></rect>"
            for sp in w.spans {
                s += "<rect class=\"\(sp.met ? "met" : "breach")\" x=\"\(f(x(sp.from)))\" y=\"\(f(y))\" width=\"\(f(max(1, x(sp.to) - x(sp.from))))\" height=\"16\" fill=\"\(sp.met ? "#2e9d4f" : "#d1342f")\">"
                s += "<title>\(esc(day(sp.from))) to \(esc(day(sp.to))): \(sp.met ? "met" : "breach")</title></rect>"
            }
        }
        let axisY = 8 + Double(r.workloads.count) * lane + 14
        s += "<text x=\"\(f(left))\" y=\"\(f(axisY))\" font-size=\"11\" fill=\"#6b7580\">\(esc(day(r.since)))</text>"
        s += "<text x=\"\(f(width - 10))\" y=\"\(f(axisY))\" font-size=\"11\" fill=\"#6b7580\" text-anchor=\"end\">\(esc(day(r.until)))</text></svg>\n"
        return s
    }

    /// The measured share against each phase's estimate, on a scale from 95 % to 100 %.
    static func uptimeChart(_ r: UptimeReport) -> String {
        let left = 230.0, width = 1000.0, row = 22.0
        func x(_ share: Double) -> Double { left + (width - left - 70) * min(1, max(0, (share - 0.95) / 0.05)) }
        let bars = r.uptime.phases.map { ($0.phase + " (" + $0.estimate + ")", $0.target, "#9aa3ad") } + (r.uptime.measuredShare.map { [("Measured", $0, "#2e6fd1")] } ?? [])
        var s = "<svg class=\"uptime\" viewBox=\"0 0 \(f(width)) \(f(Double(bars.count) * row + 16))\" role=\"img\" aria-label=\"Uptime: estimates against measured\">"
        for (i, b) in bars.enumerated() {
            let y = 6 + Double(i) * row
            s += "<text x=\"4\" y=\"\(f(y + 13))\" font-size=\"12\">\(esc(b.0))</text>"
            s += "<rect class=\"bar\" data-share=\"\(b.1)\" x=\"\(f(left))\" y=\"\(f(y))\" width=\"\(f(max(1, x(b.1) - left)))\" height=\"16\" fill=\"\(b.2)\"><title>\(esc(pct(b.1)))</title></rect>"
            s += "<text x=\"\(f(x(b.1) + 4))\" y=\"\(f(y + 13))\" font-size=\"11\">\(esc(pct(b.1)))</text>"
        }
        return s + "</svg>\n"
    }

    /// p50 and p95 of each workload's passed drills, the objective as a line.
    static func rtoChart(_ r: UptimeReport) -> String {
        let rows = r.workloads.filter { $0.rtoP95Seconds != nil }
        guard !rows.isEmpty else { return "<p class=\"muted\">No passed drill in the window.</p>\n" }
        let left = 140.0, width = 1000.0, lane = 26.0
        let top = rows.map { max($0.rtoP95Seconds ?? 0, Double($0.rtoObjectiveSeconds)) }.max() ?? 1
        func x(_ v: Double) -> Double { left + (width - left - 160) * v / max(top, 1) }
        var s = "<svg class=\"rto\" viewBox=\"0 0 \(f(width)) \(f(Double(rows.count) * lane + 10))\" role=\"img\" aria-label=\"RTO against objective\">"
        for (i, w) in rows.enumerated() {
            let y = 6 + Double(i) * lane
            s += "<text x=\"4\" y=\"\(f(y + 14))\" font-size=\"12\">\(esc(w.workload))</text>"
            s += "<rect x=\"\(f(left))\" y=\"\(f(y))\" width=\"\(f(max(1, x(w.rtoP95Seconds!) - left)))\" height=\"9\" fill=\"#e3a008\"><title>p95 \(esc(span(w.rtoP95Seconds!)))</title></rect>"
            s += "<rect x=\"\(f(left))\" y=\"\(f(y + 10))\" width=\"\(f(max(1, x(w.rtoP50Seconds!) - left)))\" height=\"9\" fill=\"#2e9d4f\"><title>p50 \(esc(span(w.rtoP50Seconds!)))</title></rect>"
            s += "<line class=\"objective\" x1=\"\(f(x(Double(w.rtoObjectiveSeconds))))\" x2=\"\(f(x(Double(w.rtoObjectiveSeconds))))\" y1=\"\(f(y - 2))\" y2=\"\(f(y + 21))\" stroke=\"#d1342f\" stroke-width=\"2\"><title>objective \(esc(span(Double(w.rtoObjectiveSeconds))))</title></line>"
            s += "<text x=\"\(f(x(w.rtoP95Seconds!) + 6))\" y=\"\(f(y + 14))\" font-size=\"11\">p50 \(esc(span(w.rtoP50Seconds!))) · p95 \(esc(span(w.rtoP95Seconds!)))</text>"
        }
        return s + "</svg>\n"
    }
}

import AlertPath
import Catalog
import Foundation
import Support
import Policy

/// The status page: server-rendered HTML with inline CSS and SVG, no script and no external
/// asset, so it works offline and in any browser. One row per workload (a traffic light, the
/// reasons, its runbooks), a 30-day timeline per workload, the stores, the recent drills; and
/// a page per drill with its RTO phases and checks.
public enum StatusPage {
    public static let days = 30

    static let style = """
        body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d232a;background:#fbfbfc}
        h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.6em 0 .4em}
        table{border-collapse:collapse;width:100%;background:#fff}td{overflow-wrap:break-word}td.state{white-space:nowrap}
        th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e3e6ea;vertical-align:top}
        th{font-weight:600;color:#4a5560;font-size:.9em}
        .light{display:inline-block;width:.9em;height:.9em;border-radius:50%;margin-right:.4em;vertical-align:-.1em}
        .protected .light{background:#2e9d4f}.at-risk .light{background:#e3a008}.broken .light{background:#d1342f}.not-configured .light{background:#9aa3ad}.unknown .light{background:#6b4fa0}
        ul.reasons{margin:0;padding-left:1.1em}.runbooks a{margin-right:.6em;font-size:.9em}.concerns a{font-weight:600}
        details.runbooks summary{font-size:.85em;color:#6b7580;cursor:pointer}
        .muted{color:#6b7580}.passed{color:#2e9d4f}.failed{color:#d1342f}
        p.alerts{padding:.4em .6em;background:#fff;border:1px solid #e3e6ea}p.alerts.broken{border-color:#d1342f;color:#d1342f}
        svg.timeline{display:block;width:100%;max-width:980px;height:auto;background:#fff;border:1px solid #e3e6ea;margin:.3em 0 1em}
        .legend span{margin-right:1em;font-size:.85em}
        """

    /// The alert path, red when a receiver does not get drctl's alerts, named with its integration and why.
    static func alertsLine(_ a: AlertPathReport) -> String {
        let when = "checked \(esc(stamp(a.checkedAt))) UTC"
        if !a.alertmanagerUp {
            return "<p id=\"alerts\" class=\"alerts unknown\"><span class=\"light\"></span>alerts: Alertmanager \(esc(a.alertmanager)) did not answer (\(esc(a.error ?? "no answer"))); whether alerts arrive is unknown (\(when)).</p>\n"
        }
        let bad = a.receivers.filter { !$0.up }
        if bad.isEmpty {
            return "<p id=\"alerts\" class=\"alerts protected\"><span class=\"light\"></span>alerts: every receiver got the test alert (\(a.receivers.map { esc("\($0.receiver) (\($0.integration))") }.joined(separator: ", ")); \(when)).</p>\n"
        }
        return "<p id=\"alerts\" class=\"alerts broken\"><span class=\"light\"></span>alerts: "
            + bad.map { "<b>\(esc($0.receiver))</b> (\(esc($0.integration))) \(esc($0.state.rawValue)): \(esc($0.detail))" }.joined(separator: "; ")
            + " (\(when)) <span class=\"runbooks\"><a href=\"runbooks/DrctlAlertRouteBroken.md\">DrctlAlertRouteBroken</a></span></p>\n"
    }

    public static func render(_ s: Snapshot, now: Date) -> String {
        var h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">"
        h += "<title>drctl — backup status</title><style>\(style)</style></head><body>\n"
        let counts = Dictionary(grouping: s.workloads, by: { $0.status.status }).mapValues(\.count)
        h += "<h1>drctl — can we restore?</h1><p class=\"muted\">As of \(esc(stamp(s.generatedAt))) UTC: "
        h += WorkloadStatus.State.allCases.compactMap { st in counts[st].map { "\($0) \(st.rawValue)" } }.joined(separator: ", ")
        h += ". Times in UTC.</p>\n"
        if let a = s.alerts { h += alertsLine(a) }
        if let me = s.replica {
            h += "<p class=\"muted\" id=\"replica\">Replica \(esc(me)): \(s.leader == me ? "the leader (runs the drills and copies)" : "a follower; the leader is \(esc(s.leader ?? "not known yet"))").</p>\n"
        }

        h += "<h2>Workloads</h2>\n<table id=\"workloads\"><thead><tr><th>Workload</th><th>Status</th><th>Newest recoverable point</th>"
        h += "<th>RPO measured / objective</th><th>Last drill (RTO / objective)</th><th>Why</th></tr></thead><tbody>\n"
        // The worst first, then by name.
        for w in s.workloads.sorted(by: { a, b in a.status.status != b.status.status ? a.status.status > b.status.status : a.status.workload < b.status.workload }) {
            let st = w.status
            h += "<tr class=\"workload \(cls(st.status))\" data-workload=\"\(esc(st.workload))\" data-status=\"\(cls(st.status))\">"
            h += "<td><a href=\"#tl-\(esc(st.workload))\">\(esc(st.workload))</a></td>"
            h += "<td class=\"state\"><span class=\"light\" title=\"\(esc(st.status.rawValue))\"></span>\(esc(st.status.rawValue))</td>"
            h += "<td>\(st.newestRecoverablePoint.map { esc(stamp($0)) } ?? "none")</td>"
            h += "<td>\(st.rpoSeconds.map { TimeSpan.humanize($0) } ?? "-") / \(TimeSpan.humanize(st.rpoObjectiveSeconds))</td>"
            if let d = st.lastDrill {
                h += "<td><a class=\"\(d.result)\" href=\"drills/\(esc(d.id))\">\(esc(d.result))</a> \(esc(stamp(d.at))) "
                h += "(\(TimeSpan.humanize(Int(d.rtoSeconds.rounded()))) / \(TimeSpan.humanize(d.rtoObjectiveSeconds)))</td>"
            } else {
                h += "<td class=\"muted\">never</td>"
            }
            let copies = st.copies.filter { $0.error == nil }.map { c in
                "<li class=\"muted\">copy to \(esc(c.store)): lag \(TimeSpan.humanize(Int(c.lagSeconds ?? 0)))\(c.maxLagSeconds.map { " (maxLag \(TimeSpan.humanize($0)))" } ?? ""), last complete copy \(c.lastSuccess.map { RFC3339.formatReadable($0) + " UTC" } ?? "never")\(c.newestRecoverablePoint.map { ", newest recoverable point on it " + RFC3339.formatReadable($0) + " UTC" } ?? "")</li>"
            }.joined()
            // Long-term tiers: restore points, never shown as a range.
            let points = st.sources.filter { $0.points != nil }.map { s in
                "<li class=\"muted\">\(esc(s.source)): point-in-time from \(s.pitrFrom.map { RFC3339.formatReadable($0) + " UTC" } ?? "nowhere"); "
                    + "restore points only: \((s.points ?? []).map { RFC3339.formatReadable($0) }.joined(separator: ", "))</li>"
            }.joined()
            h += "<td><ul class=\"reasons\">" + (st.reasons.isEmpty ? "<li class=\"muted\">restorable within its objectives</li>" : st.reasons.map { "<li>\(esc($0))</li>" }.joined()) + copies + points + "</ul>"
            h += runbookLinks(concerning: relevantAlerts(w, now: now), all: w.runbooks) + "</td></tr>\n"
        }
        h += "</tbody></table>\n"

        h += "<h2>Last \(days) days</h2><div class=\"legend muted\"><span>● restore point (colour by tier/cluster; hollow: not restorable)</span>"
        h += "<span>▬ WAL archived</span><span style=\"color:#d1342f\">▬ WAL gap</span><span>▲ drill (green passed, red failed)</span>"
        h += "<span>▒ RPO objective before now</span></div>\n"
        for w in s.workloads.sorted(by: { $0.status.workload < $1.status.workload }) {
            h += "<h3 id=\"tl-\(esc(w.status.workload))\">\(esc(w.status.workload))</h3>\n"
            h += timeline(w, drills: s.drills.filter { $0.workload == w.status.workload }, now: now)
        }

        h += "<h2>Object stores</h2><table id=\"stores\"><thead><tr><th>Store</th><th>Reachable</th><th>Last catalog sync</th><th>Objects</th><th>Sync errors</th></tr></thead><tbody>\n"
        for st in s.stores.sorted(by: { $0.name < $1.name }) {
            h += "<tr class=\"store\" data-store=\"\(esc(st.name))\"><td>\(esc(st.name))</td>"
            h += "<td>\(st.up.map { $0 ? "yes" : "<span class=\"failed\">no</span>" } ?? "not tried yet")\(st.lastError.map { " <span class=\"muted\">\(esc($0))</span>" } ?? "")</td>"
            h += "<td>\(st.lastSyncSuccess.map { esc(stamp($0)) } ?? "never")\(st.lastSyncSeconds.map { String(format: " (%.1fs)", $0) } ?? "")</td>"
            h += "<td>\(st.objectsIndexed)</td><td>\(st.syncErrors)"
            var concerns: [String] = []
            if st.up == false { concerns.append("DrctlObjectStoreUnreachable") }
            if st.syncErrors > 0 || st.lastError != nil { concerns.append("DrctlCatalogSyncFailing") }
            h += runbookLinks(concerning: concerns, all: st.runbooks) + "</td></tr>\n"
        }
        h += "</tbody></table>\n"

        if s.unauthenticatedEvidence > 0 {
            h += "<p class=\"bad-evidence\">\(s.unauthenticatedEvidence) drill evidence object(s) in the bucket are unauthenticated (not sealed with drctl's record key) and are not taken for drills.</p>\n"
        }
        if s.undecodableEvidence > 0 {
            h += "<p class=\"bad-evidence\">\(s.undecodableEvidence) drill evidence object(s) in the bucket do not decode and are not shown (see the service log for their keys).</p>\n"
        }
        h += "<h2>Recent drills</h2><table id=\"drills\"><thead><tr><th>Started</th><th>Workload</th><th>Mode</th><th>Result</th><th>RTO</th><th>Data loss</th></tr></thead><tbody>\n"
        for d in s.drills.prefix(50) {
            h += "<tr class=\"drill \(d.result.rawValue)\"><td><a href=\"drills/\(esc(d.id))\">\(esc(stamp(d.startedAt)))</a></td><td>\(esc(d.workload))</td>"
            h += "<td>\(esc(d.mode))</td><td class=\"\(d.result.rawValue)\">\(d.result.rawValue)</td>"
            h += "<td>\(String(format: "%.1fs", d.rtoSeconds)) / \(TimeSpan.humanize(d.rtoObjectiveSeconds))</td>"
            h += "<td>\(d.rpoSeconds.map { String(format: "%.0fs", $0) } ?? "-")</td></tr>\n"
        }
        h += "</tbody></table>\n<p class=\"muted\">drctl serve · <a href=\"report\">30-day report</a> · <a href=\"metrics\">metrics</a> · <a href=\"api/v1/workloads\">API</a></p></body></html>\n"
        return h
    }

    /// One drill: target, result, RTO phases, each check.
    public static func drill(_ d: DrillEvidence) -> String {
        var h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>drill \(esc(d.id))</title><style>\(style)</style></head><body>\n"
        h += "<p><a href=\"../\">← status</a></p><h1>Drill \(esc(d.id)) of \(esc(d.workload)): <span class=\"\(d.result.rawValue)\">\(d.result.rawValue)</span></h1>\n"
        h += "<table id=\"drill\"><tbody>"
        let rows: [(String, String)] = [
            ("mode", d.mode), ("where", d.host), ("started", stamp(d.startedAt)), ("target", d.target),
            ("measured RTO / objective", String(format: "%.1fs / ", d.rtoSeconds) + TimeSpan.humanize(d.rtoObjectiveSeconds)),
            ("data loss / RPO objective", (d.rpoSeconds.map { String(format: "%.1fs", $0) } ?? "-") + " / " + TimeSpan.humanize(d.rpoObjectiveSeconds)),
            ("error", d.error ?? "none"),
        ]
        for (k, v) in rows { h += "<tr><th>\(esc(k))</th><td>\(esc(v))</td></tr>" }
        h += "</tbody></table>\n<h2>RTO phases</h2>\n"
        let total = max(d.phases.values.reduce(0, +), 0.001)
        var x = 0.0
        h += "<svg class=\"phases\" viewBox=\"0 0 1000 40\" role=\"img\" aria-label=\"RTO phases\">"
        let palette = ["#4f7cac", "#7fb069", "#e6aa68", "#ca3c25", "#8e6c8a", "#3c9d9b", "#b5a642", "#6b7580"]
        for (i, (name, secs)) in d.phases.sorted(by: { $0.key < $1.key }).enumerated() {
            let w = secs / total * 1000
            h += "<rect class=\"phase\" data-phase=\"\(esc(name))\" x=\"\(f(x))\" y=\"5\" width=\"\(f(max(w, 1)))\" height=\"30\" fill=\"\(palette[i % palette.count])\"><title>\(esc(name)) \(String(format: "%.1fs", secs))</title></rect>"
            x += w
        }
        h += "</svg><table><tbody>" + d.phases.sorted(by: { $0.key < $1.key }).map { "<tr><th>\(esc($0.key))</th><td>\(String(format: "%.2fs", $0.value))</td></tr>" }.joined() + "</tbody></table>\n"
        h += "<h2>Checks</h2><table id=\"checks\"><tbody>"
        for c in d.checks { h += "<tr class=\"check \(c.result.rawValue)\"><td class=\"\(c.result.rawValue)\">\(c.result.rawValue)</td><td>\(esc(c.name))</td><td>\(esc(c.detail))</td></tr>" }
        h += "</tbody></table>\n<h2>Databases</h2><table><tbody>"
        for db in d.databases {
            h += "<tr><th>\(esc(db.cluster))</th><td>reached \(db.achieved.map { esc(stamp($0)) } ?? "-"); \(esc(db.stop))</td></tr>"
        }
        h += "</tbody></table></body></html>\n"
        return h
    }

    /// The 30-day timeline of one workload as inline SVG: a lane per restore-point source, a
    /// lane per database's WAL (gaps in red), drills as triangles, the RPO objective as a band.
    static func timeline(_ w: Snapshot.Workload, drills: [DrillEvidence], now: Date) -> String {
        let width = 980.0, left = 150.0, right = 24.0
        let start = now.addingTimeInterval(-Double(days) * 86400)
        func x(_ d: Date) -> Double { left + max(0, min(1, d.timeIntervalSince(start) / (now.timeIntervalSince(start)))) * (width - left - right) }
        let sources = Array(Set(w.timeline.points.map { "\($0.kind) \($0.source)" })).sorted()
        let clusters = Array(Set(w.timeline.wal.map(\.cluster))).sorted()
        let lanes = sources.count + clusters.count + 1
        let laneH = 22.0, top = 18.0
        let height = top + Double(lanes) * laneH + 8
        var h = "<svg class=\"timeline\" data-workload=\"\(esc(w.status.workload))\" viewBox=\"0 0 \(f(width)) \(f(height))\" role=\"img\" aria-label=\"\(esc(w.status.workload)): last \(days) days\">"
        // The RPO band: the newest recoverable point must fall inside it.
        let band = x(now.addingTimeInterval(-Double(w.status.rpoObjectiveSeconds)))
        h += "<rect class=\"rpo-band\" x=\"\(f(band))\" y=\"\(f(top - 4))\" width=\"\(f(max(1, x(now) - band)))\" height=\"\(f(Double(lanes) * laneH))\" fill=\"#2e9d4f\" fill-opacity=\"0.10\"><title>RPO objective \(TimeSpan.humanize(w.status.rpoObjectiveSeconds))</title></rect>"
        for d in 0...days where d % 5 == 0 {
            let t = start.addingTimeInterval(Double(d) * 86400)
            h += "<line x1=\"\(f(x(t)))\" x2=\"\(f(x(t)))\" y1=\"\(f(top - 6))\" y2=\"\(f(height - 4))\" stroke=\"#e3e6ea\"/>"
            h += "<text x=\"\(f(x(t)))\" y=\"10\" font-size=\"9\" text-anchor=\"middle\" fill=\"#6b7580\">\(esc(dayLabel(t)))</text>"
        }
        let colours = ["#4f7cac", "#7fb069", "#8e6c8a", "#e6aa68", "#3c9d9b", "#b5a642"]
        var lane = 0
        func label(_ text: String, _ y: Double) -> String {
            "<text x=\"4\" y=\"\(f(y + 4))\" font-size=\"11\" fill=\"#1d232a\">\(esc(text))</text>"
        }
        for (i, src) in sources.enumerated() {
            let y = top + Double(lane) * laneH + laneH / 2
            h += label(src, y)
            for p in w.timeline.points where "\(p.kind) \(p.source)" == src && p.at >= start {
                let c = colours[i % colours.count]
                h += "<circle class=\"restore-point\" data-source=\"\(esc(src))\" cx=\"\(f(x(p.at)))\" cy=\"\(f(y))\" r=\"4\" fill=\"\(p.restorable ? c : "#fff")\" stroke=\"\(c)\"><title>\(esc(p.id)) \(esc(stamp(p.at)))\(p.restorable ? "" : " (not restorable)")</title></circle>"
            }
            lane += 1
        }
        for cluster in clusters {
            let y = top + Double(lane) * laneH + laneH / 2
            h += label("WAL \(cluster)", y)
            for s in w.timeline.wal where s.cluster == cluster && s.to >= start {
                let x0 = x(max(s.from, start)), x1 = x(s.to)
                if let missing = s.missing {
                    h += "<rect class=\"wal-gap\" data-missing=\"\(esc(missing))\" x=\"\(f(x0))\" y=\"\(f(y - 6))\" width=\"\(f(max(3, x1 - x0)))\" height=\"12\" fill=\"#d1342f\"><title>WAL gap: \(esc(missing)) missing (\(esc(stamp(s.from))) .. \(esc(stamp(s.to))))</title></rect>"
                } else {
                    h += "<rect class=\"wal\" x=\"\(f(x0))\" y=\"\(f(y - 4))\" width=\"\(f(max(1, x1 - x0)))\" height=\"8\" fill=\"#7fb069\"><title>WAL archived \(esc(stamp(s.from))) .. \(esc(stamp(s.to)))</title></rect>"
                }
            }
            lane += 1
        }
        let y = top + Double(lane) * laneH + laneH / 2
        h += label("drills", y)
        for d in drills where d.startedAt >= start {
            let cx = x(d.startedAt)
            let fill = d.result == .passed ? "#2e9d4f" : "#d1342f"
            h += "<polygon class=\"drill-marker \(d.result.rawValue)\" points=\"\(f(cx - 5)),\(f(y + 5)) \(f(cx + 5)),\(f(y + 5)) \(f(cx)),\(f(y - 5))\" fill=\"\(fill)\"><title>drill \(esc(d.id)) \(d.result.rawValue), RTO \(String(format: "%.1fs", d.rtoSeconds))</title></polygon>"
        }
        h += "</svg>\n"
        return h
    }

    /// The alerts whose condition the workload is in now (what the rules would fire on), for the
    /// row's runbook links.
    public static func relevantAlerts(_ w: Snapshot.Workload, now: Date) -> [String] {
        let st = w.status
        var out: [String] = []
        if st.sources.contains(where: { ($0.walGaps ?? 0) > 0 }) { out.append("DrctlWALGap") }
        if st.sources.contains(where: { s in s.walLastArchived.map { now.timeIntervalSince($0) > Double(st.rpoObjectiveSeconds) } ?? false }) {
            out.append("DrctlWALArchivingStale")
        }
        if st.sources.contains(where: { s in s.lastFailure.map { f in s.lastSuccess.map { f > $0 } ?? true } ?? false }) { out.append("DrctlBackupFailed") }
        if st.reasons.contains(where: { $0.contains(" old (schedule ") || $0.hasPrefix("no ") }) { out.append("DrctlBackupMissing") }
        if let p = st.newestRecoverablePoint, now.timeIntervalSince(p) > Double(st.rpoObjectiveSeconds) { out.append("DrctlRPOBreached") }
        if st.copies.contains(where: { c in c.error != nil || (c.lagSeconds ?? 0) > Double(c.maxLagSeconds ?? .max) }) { out.append("DrctlCopyLagging") }
        if let d = st.lastDrill {
            if d.result == "failed" { out.append("DrctlRestoreDrillFailed") }
            if d.rtoSeconds > Double(d.rtoObjectiveSeconds) { out.append("DrctlRTOExceeded") }
        } else if w.runbooks["DrctlRestoreDrillNotRun"] != nil {
            out.append("DrctlRestoreDrillNotRun")
        }
        return out
    }

    /// The runbooks of the alerts a row is in, then all of its runbooks folded away.
    static func runbookLinks(concerning: [String], all runbooks: [String: String]) -> String {
        func link(_ name: String, _ url: String) -> String { "<a href=\"\(esc(url))\">\(esc(name))</a>" }
        var h = ""
        let concerns = concerning.filter { runbooks[$0] != nil }
        if !concerns.isEmpty { h += "<div class=\"runbooks concerns\">runbook: " + concerns.map { link($0, runbooks[$0]!) }.joined() + "</div>" }
        if !runbooks.isEmpty {
            h += "<details class=\"runbooks\"><summary>all runbooks</summary>" + runbooks.sorted { $0.key < $1.key }.map { link($0.key, $0.value) }.joined(separator: " ") + "</details>"
        }
        return h
    }

    static func cls(_ s: WorkloadStatus.State) -> String { s.rawValue.lowercased().replacingOccurrences(of: " ", with: "-") }
    static func f(_ v: Double) -> String { String(format: "%.1f", v) }
    static func stamp(_ d: Date) -> String { RFC3339.formatReadable(d) }
    static func dayLabel(_ d: Date) -> String { String(stamp(d).dropFirst(5).prefix(5)) }

    public static func esc(_ s: String) -> String { HTML.escape(s) }
}

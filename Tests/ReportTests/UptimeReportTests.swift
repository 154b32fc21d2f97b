import Foundation
import Testing
@testable import Catalog
@testable import Report

/// The report's arithmetic on a history whose times are given (no wall clock).
@Suite struct UptimeReportTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    func at(_ hours: Double) -> Date { t0.addingTimeInterval(hours * 3600) }

    func drill(_ workload: String, _ hours: Double, _ result: DrillEvidence.Result, rto: Double) -> DrillEvidence {
        DrillEvidence(id: "d\(hours)", workload: workload, mode: "host", host: "h", startedAt: at(hours), finishedAt: at(hours).addingTimeInterval(rto),
                      target: "latest", targetTime: nil, result: result, error: nil, databases: [], checks: [], rtoSeconds: rto, rtoObjectiveSeconds: 250,
                      rpoSeconds: 1, rpoObjectiveSeconds: 300, phases: [:], bytesFetched: 0)
    }

    func report() -> UptimeReport {
        let samples = [
            CatalogStore.RPOSample(workload: "a", at: at(0), rpoSeconds: 60, objectiveSeconds: 300, status: "PROTECTED", reasons: nil),
            .init(workload: "a", at: at(1), rpoSeconds: 900, objectiveSeconds: 300, status: "AT RISK", reasons: "WAL archiving stopped"),
            .init(workload: "a", at: at(2), rpoSeconds: 4500, objectiveSeconds: 300, status: "AT RISK", reasons: "WAL archiving stopped"),
            .init(workload: "a", at: at(3), rpoSeconds: 30, objectiveSeconds: 300, status: "PROTECTED", reasons: nil),
            .init(workload: "b", at: at(-5), rpoSeconds: 10, objectiveSeconds: 3600, status: "PROTECTED", reasons: nil),
        ]
        let drills = [drill("a", 0.5, .passed, rto: 100), drill("a", 1.5, .passed, rto: 300), drill("a", 2.5, .passed, rto: 200),
                      drill("a", 3.5, .failed, rto: 50), drill("a", -2, .passed, rto: 999)]
        return UptimeReport.build(objectives: [.init(workload: "a", rpoSeconds: 300, rtoSeconds: 250), .init(workload: "b", rpoSeconds: 3600, rtoSeconds: 600)],
                                  samples: samples, drills: drills, statuses: [], since: at(-1), now: at(4), hold: 24 * 3600)
    }

    /// Each measurement holds until the next; before the first nothing is known (not counted).
    @Test func theShareOfTimeTheRPOWasMetAndTheLongestBreach() throws {
        let r = report()
        let a = try #require(r.workloads.first { $0.workload == "a" })
        #expect(a.measuredSeconds == 4 * 3600 && a.metSeconds == 2 * 3600 && a.rpoMetShare == 0.5)
        #expect(a.breaches == 1 && a.longestBreach?.seconds == 2 * 3600 && a.longestBreach?.from == at(1) && a.longestBreach?.to == at(3))
        #expect(a.longestBreach?.worstRPOSeconds == 4500 && a.longestBreach?.cause == "AT RISK: WAL archiving stopped")
        #expect(a.spans.map(\.met) == [true, false, true], "merged stretches: \(a.spans)")
        // b's one measurement, from before the window, holds through it.
        let b = try #require(r.workloads.first { $0.workload == "b" })
        #expect(b.measuredSeconds == 5 * 3600 && b.rpoMetShare == 1)
    }

    /// Drills in the window only; RTO percentiles of the passed ones (nearest rank).
    @Test func drillsAndRTOPercentiles() throws {
        let a = try #require(report().workloads.first { $0.workload == "a" })
        #expect(a.drillsRun == 4 && a.drillsPassed == 3)
        #expect(a.rtoP50Seconds == 200 && a.rtoP95Seconds == 300 && a.rtoWithinObjective == 2)
    }

    /// The cluster is in breach while any measured workload is: 2 h of the 5 h measured.
    @Test func theGuidesPhasesAgainstTheMeasuredShare() {
        let r = report()
        #expect(r.uptime.measuredSeconds == 5 * 3600 && r.uptime.breachSeconds == 2 * 3600)
        #expect(r.uptime.measuredShare == 0.6)
        #expect(r.uptime.phases.map(\.phase).first == "Current (Phase 0)" && r.uptime.phases.allSatisfy { !$0.met })
        let md = ReportRendering.markdown(r)
        #expect(md.contains("| a | 50.00 % | 5m | 1 (2h) | 3 / 4 | 3m20s / 5m (objective 4m10s) | - |"), "\(md)")
        #expect(md.contains("below every phase the guide estimates"))
        #expect(md.contains("- **a**: ") && md.contains("AT RISK: WAL archiving stopped"))
        let html = ReportRendering.html(r)
        #expect(html.contains("<svg class=\"rpo\"") && html.contains("class=\"breach\"") && html.contains("<svg class=\"rto\"") && html.contains("<svg class=\"uptime\""))
    }

    @Test func noHistorySaysSo() {
        let r = UptimeReport.build(objectives: [.init(workload: "a", rpoSeconds: 300, rtoSeconds: 60)], samples: [], drills: [], statuses: [], since: at(0), now: at(1))
        #expect(r.workloads[0].rpoMetShare == nil && r.uptime.measuredShare == nil)
        #expect(ReportRendering.markdown(r).contains("No RPO measurements in the window"))
    }
}

extension UptimeReportTests {
    /// A measurement stands for at most `hold`: a silence (serve down) is not time met.
    @Test func aLongSilenceIsUnmeasuredNotMet() throws {
        let samples = [CatalogStore.RPOSample(workload: "a", at: at(0), rpoSeconds: 60, objectiveSeconds: 300, status: "PROTECTED", reasons: nil),
                       .init(workload: "a", at: at(10), rpoSeconds: 60, objectiveSeconds: 300, status: "PROTECTED", reasons: nil)]
        let r = UptimeReport.build(objectives: [.init(workload: "a", rpoSeconds: 300, rtoSeconds: 60)], samples: samples, drills: [], statuses: [],
                                   since: at(0), now: at(11))
        let a = try #require(r.workloads.first)
        #expect(a.measuredSeconds == 3 * 3600 && a.metSeconds == 3 * 3600, "2 h after the first measurement, 1 h after the second: \(a)")
        #expect(a.spans.count == 2, "the silence is a hole in the chart: \(a.spans)")
    }

    /// Site rehearsals in the window with their critical path, and each drill's predicted RTO
    /// against what it took, in both renderings.
    @Test func rehearsalsAndPredictionsAreReportedWithTheirError() throws {
        func w(_ name: String, _ start: Double, _ healthy: Double, waited: String? = nil, result: DrillEvidence.Result = .passed) -> RehearsalEvidence.Workload {
            .init(workload: name, result: result, error: nil, drillID: nil, startedAfter: start, healthyAfter: healthy, rtoSeconds: healthy - start,
                  rtoObjectiveSeconds: 600, rpoSeconds: 1, rpoObjectiveSeconds: 300, phases: ["wal_replay": healthy - start], waitedFor: waited, dependsOn: [])
        }
        let met = RehearsalEvidence(id: "r1", from: "offsite", mode: "host", host: "h", startedAt: at(1), finishedAt: at(1.1), siteRTOObjectiveSeconds: 3600,
                                    parallel: 2, workloads: [w("db", 0, 900), w("app", 900, 1200, waited: "db")])
        let failed = RehearsalEvidence(id: "r2", from: "offsite", mode: "host", host: "h", startedAt: at(2), finishedAt: at(2.1), siteRTOObjectiveSeconds: 3600,
                                       parallel: 2, workloads: [w("db", 0, 100, result: .failed), w("app", 0, 50)])
        var within = drill("a", 0.5, .passed, rto: 100), outside = drill("a", 1.5, .passed, rto: 300)
        let p = RTOModel.predict([.init(drill: "x", fetchBytesPerSecond: 1, replayBytesPerSecond: nil, fixedSeconds: 90)], baseBytes: 10, walBytes: 0)!
        within.predictedRTO = p
        outside.predictedRTO = p
        let r = UptimeReport.build(objectives: [.init(workload: "a", rpoSeconds: 300, rtoSeconds: 250)], samples: [], drills: [within, outside],
                                   statuses: [], since: at(0), now: at(4), rehearsals: [failed, met])
        #expect(r.rehearsals.map(\.id) == ["r1", "r2"] && r.rehearsals[0].criticalPath == ["db", "app"] && r.rehearsals[1].failed == ["db"])
        #expect(r.predictions.count == 2 && r.predictions[0].withinRange && !r.predictions[1].withinRange)
        #expect(abs(r.predictions[0].error) < 1e-9 && abs(r.predictions[1].error - 2) < 1e-9, "(300 - 100) / 100")
        let md = ReportRendering.markdown(r)
        #expect(md.contains("## Site rehearsals (drctl rehearse)") && md.contains("| offsite | met | 20m / 1h | db -> app (wal_replay) |")
                && md.contains("FAILED (db did not come back)"), "\(md)")
        #expect(md.contains("## Predicted against measured RTO") && md.contains("1 of 2 drills took a time within their predicted range; mean absolute error 100 %")
                && md.contains("+200 % (outside the range)"), "\(md)")
        let html = ReportRendering.html(r)
        #expect(html.contains("id=\"rehearsals\"") && html.contains("id=\"predictions\""))
    }
}

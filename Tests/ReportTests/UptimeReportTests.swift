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
}

import Foundation
import Support
import Testing
@testable import Catalog
import Layout

/// The RTO model alone: rates from drills, a prediction with its stated range, the WAL rate from
/// base backups, and the schedule advice lint gives.
struct RTOModelTests {
    static let now = StatusTests.now
    static let mib = Double(1 << 20)

    /// A passed host drill that fetched `base` MiB at `fetch` MiB/s, replayed `segments` WAL segments at `replay` MiB/s, and spent `fixed` s otherwise.
    static func drill(_ n: Int, base: Double, fetch: Double, segments: Int, replay: Double, fixed: Double, result: DrillEvidence.Result = .passed) -> DrillEvidence {
        let walMiB = Double(segments * 16)
        let phases = ["download_unpack": base / fetch, "wal_replay": walMiB / replay, "plan": fixed / 2, "checks": fixed / 2]
        var d = DrillEvidence(id: "d\(n)", workload: "app", mode: "host", host: "h", startedAt: now.addingTimeInterval(Double(-n * 3600)), finishedAt: now,
                              target: "latest", targetTime: nil, result: result, error: nil,
                              databases: [.init(cluster: "db", server: "db", backupID: "b", target: "latest", achieved: now, stop: "", timeline: 1,
                                                walSegments: segments, baseBytes: Int64(base * mib), walBytes: 0)],
                              checks: [], rtoSeconds: phases.values.reduce(0, +), rtoObjectiveSeconds: 3600, rpoSeconds: 1, rpoObjectiveSeconds: 300,
                              phases: phases, bytesFetched: 0)
        d.mode = "host"
        return d
    }

    @Test func ratesComeFromPassedHostDrillsAndPredictWithinTheirRange() throws {
        let drills = [Self.drill(1, base: 1024, fetch: 100, segments: 64, replay: 50, fixed: 10),
                      Self.drill(2, base: 1024, fetch: 80, segments: 64, replay: 40, fixed: 12),
                      Self.drill(3, base: 1024, fetch: 1, segments: 64, replay: 1, fixed: 1, result: .failed)]
        let samples = RTOModel.samples(drills)
        #expect(samples.count == 2 && samples.allSatisfy { $0.drill != "d3" }, "a failed drill measures nothing")
        #expect(abs(samples[0].fetchBytesPerSecond - 100 * Self.mib) < 1 && abs((samples[0].replayBytesPerSecond ?? 0) - 50 * Self.mib) < 1 && abs(samples[0].fixedSeconds - 10) < 1e-9)
        // Median of two: the means. 2 GiB at 90 MiB/s, 2 GiB of WAL at 45 MiB/s, 11 s.
        let p = try #require(RTOModel.predict(samples, baseBytes: 2 << 30, walBytes: 2 << 30))
        #expect(abs(p.seconds - (11 + 2048.0 / 90 + 2048.0 / 45)) < 0.01, "\(p.seconds)")
        #expect(p.lowSeconds < p.seconds && p.highSeconds > p.seconds && p.contains(p.seconds))
        // The slower drill's rates alone, and the faster's, both fall inside the stated range.
        for s in samples {
            let alone = try #require(RTOModel.predict([s], baseBytes: 2 << 30, walBytes: 2 << 30)).seconds
            #expect(p.contains(alone), "\(alone) in \(p.lowSeconds)...\(p.highSeconds)")
        }
        // More WAL since the base backup: a longer restore.
        let later = try #require(RTOModel.predict(samples, baseBytes: 2 << 30, walBytes: 3 << 30))
        #expect(later.seconds > p.seconds)
        #expect(RTOModel.predict([], baseBytes: 1, walBytes: 1) == nil, "no drill, no prediction")
    }

    @Test func theWALRateComesFromTheDistanceBetweenBaseBackups() {
        // Two backups a day apart, 0x90 segments (of 16 MiB) apart: 2.25 GiB in 24 h.
        let a = StatusTests.backup("20261126T040000", end: 86400 + 3600, beginAgo: 86400 + 3700)
        var b = StatusTests.backup("20261127T040000", end: 3600, beginAgo: 3700)
        b.beginWAL = "000000010000000000000094"
        let rate = RTOModel.walBytesPerHour([b, a])
        #expect(rate.map { abs($0 - 0x90 * 16 * Self.mib / 24) < 1 } == true, "\(String(describing: rate))")
        #expect(RTOModel.walBytesPerHour([a]) == nil)
    }

    @Test func aScheduleThatCannotMeetTheRTOIsNamedWithOneThatCan() throws {
        // 8 GiB/h of WAL, 45 MiB/s replay, 100 MiB/s fetch of 10 GiB, 60 s fixed, RTO 1 h.
        let samples = [RTOModel.Sample(drill: "d", fetchBytesPerSecond: 100 * Self.mib, replayBytesPerSecond: 45 * Self.mib, fixedSeconds: 60)]
        let perHour = 8 * 1024 * Self.mib
        let advice = try #require(RTOModel.advice(samples, baseBytes: 10 << 30, walBytesPerHour: perHour, intervalSeconds: 86400, rto: 3600))
        // Daily: 60 + 102.4 + 24 * 8192 / 45 s ≈ 4531 s; every 12 h: ≈ 2347 s.
        print("drctl lint --measured: \(advice)")
        let worst = try #require(RTOModel.worstCase(samples, baseBytes: 10 << 30, walBytesPerHour: perHour, intervalSeconds: 86400)).seconds
        #expect(worst > 3600 && advice.contains("base backups every 1d give a \(TimeSpan.humanize(Int(worst))) RTO (objective 1h)"), "\(advice)")
        let every = try #require(advice.firstMatch(of: /every (\d+)h meets it/).flatMap { Int($0.1) }, "\(advice)")
        #expect((RTOModel.worstCase(samples, baseBytes: 10 << 30, walBytesPerHour: perHour, intervalSeconds: every * 3600)?.seconds ?? .infinity) <= 3600)
        #expect(every == 12, "the longest interval that meets it: \(advice)")
        #expect(RTOModel.advice(samples, baseBytes: 10 << 30, walBytesPerHour: perHour, intervalSeconds: 3600, rto: 3600) == nil, "hourly meets it: nothing to say")
    }

    @Test func aForgedSegmentSizeMeasuresNothingAndTrapsNothing() {
        var a = StatusTests.backup("20261126T040000", end: 86400 + 3600, beginAgo: 86400 + 3700)
        var b = StatusTests.backup("20261127T040000", end: 3600, beginAgo: 3700)
        a.beginWAL = "000000010000000000000001"
        b.beginWAL = "00000001FFFFFFFF000000FF"
        for size: UInt64 in [1, 3 << 20, 2 << 30] {
            a.segmentSize = size
            b.segmentSize = size
            #expect(RTOModel.walBytesPerHour([a, b]) == nil, "\(size)")
            #expect(RTOModel.restoreNow(StatusTests.scan([b])["db"]!, WALArchive()) == nil, "\(size)")
        }
        let samples = [RTOModel.Sample(drill: "d", fetchBytesPerSecond: 1, replayBytesPerSecond: 1, fixedSeconds: 1)]
        #expect(RTOModel.advice(samples, baseBytes: 1, walBytesPerHour: 1e300, intervalSeconds: 86400, rto: 60) == nil)
    }
}

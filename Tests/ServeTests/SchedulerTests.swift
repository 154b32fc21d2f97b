import Foundation
import Testing
@testable import Policy
@testable import Serve

/// The schedule engine with a clock the test moves: jobs that block until released.
@Suite struct SchedulerTests {
    final class Gate: @unchecked Sendable {
        let cond = NSCondition()
        var open: Set<String> = []
        var runs: [String] = []
        func run(_ name: String) {
            cond.withLock { runs.append(name) }
            cond.lock()
            while !open.contains(name) { cond.wait() }
            open.remove(name)
            cond.unlock()
        }
        func release(_ name: String) { cond.withLock { open.insert(name); cond.broadcast() } }
        var started: [String] { cond.withLock { runs } }
    }

    let t0 = ISO8601DateFormatter().date(from: "2026-11-27T10:00:00Z")!

    func wait(_ s: Scheduler, until: () -> Bool) {
        for _ in 0..<400 {
            if until() { return }
            usleep(5_000)
        }
    }

    /// The liveness probe's answer: alive while ticks come, not once they stop for 30 s.
    @Test func aSchedulerThatStopsTickingIsNotAlive() throws {
        let s = Scheduler(jobs: [], clock: { [t0] in t0 }, log: { _ in })
        #expect(s.alive(now: t0), "not started yet: alive")
        s.tick(now: t0)
        #expect(s.alive(now: t0.addingTimeInterval(29)))
        #expect(!s.alive(now: t0.addingTimeInterval(31)), "no tick for 31 s")
        s.tick(now: t0.addingTimeInterval(31))
        #expect(s.alive(now: t0.addingTimeInterval(32)))
    }

    @Test func drillsAreBoundedAndNeverOverlapPerWorkload() throws {
        let gate = Gate()
        let every = try Cron("* * * * * *", dialect: .drctl)
        let jobs = ["a", "b"].map { w in Scheduler.Job(name: "drill \(w)", kind: .drill(workload: w), cron: every) { gate.run("drill \(w)") } }
            + [Scheduler.Job(name: "sync", kind: .sync, cron: every) { gate.run("sync") }]
        let s = Scheduler(jobs: jobs, maxDrills: 1, clock: { [t0] in t0 }, log: { _ in })
        let started = s.tick(now: t0.addingTimeInterval(1))
        #expect(started.map { jobs[$0].name } == ["drill a", "sync"], "one drill slot: b waits; the sync is not a drill")
        wait(s) { gate.started.count == 2 }
        // Due again while running: skipped, not queued twice.
        #expect(s.tick(now: t0.addingTimeInterval(2)).isEmpty)
        gate.release("drill a")
        wait(s) { gate.started.contains("drill b") }
        #expect(gate.started.contains("drill b"), "b starts when a's slot frees")
        #expect(s.runningJobs.sorted() == ["drill b", "sync"])
        gate.release("drill b"); gate.release("sync")
        #expect(s.waitIdle(timeout: 5))
    }

    @Test func aFailingJobIsCountedAndRunsAgain() throws {
        let counter = Gate()
        let every = try Cron("* * * * * *", dialect: .drctl)
        struct Boom: Error {}
        let job = Scheduler.Job(name: "sync rgw", kind: .sync, cron: every) { counter.cond.withLock { counter.runs.append("x") }; throw Boom() }
        let lines = Gate()
        let s = Scheduler(jobs: [job], clock: { [t0] in t0 }, log: { line in lines.cond.withLock { lines.runs.append(line) } })
        s.tick(now: t0.addingTimeInterval(1))
        #expect(s.waitIdle(timeout: 5))
        s.tick(now: t0.addingTimeInterval(2))
        #expect(s.waitIdle(timeout: 5))
        #expect(counter.started.count == 2 && s.failures["sync rgw"] == 2)
        #expect(lines.started.contains { $0.hasPrefix("sync rgw: FAILED after") && $0.contains("Boom") })
    }

    @Test func stopWaitsForRunningJobsAndStartsNoMore() throws {
        let gate = Gate()
        let every = try Cron("* * * * * *", dialect: .drctl)
        let s = Scheduler(jobs: [.init(name: "drill a", kind: .drill(workload: "a"), cron: every) { gate.run("drill a") }], clock: { [t0] in t0 }, log: { _ in })
        s.tick(now: t0.addingTimeInterval(1))
        wait(s) { !gate.started.isEmpty }
        #expect(!s.stop(timeout: 0.2), "still running")
        gate.release("drill a")
        #expect(s.stop(timeout: 5))
        #expect(s.tick(now: t0.addingTimeInterval(5)).isEmpty)
    }
}

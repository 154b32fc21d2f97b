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

/// Leader-only work on a replica that is not the leader, and the slot it runs on taking over.
@Suite struct SchedulerLeadershipTests {
    let t0 = ISO8601DateFormatter().date(from: "2026-11-27T10:00:00Z")!

    final class Flag: @unchecked Sendable {
        let lock = NSLock()
        var value = false
        var runs: [(String, Date)] = []
        func set(_ v: Bool) { lock.withLock { value = v } }
        func get() -> Bool { lock.withLock { value } }
        func ran(_ name: String, _ slot: Date) { lock.withLock { runs.append((name, slot)) } }
        var all: [(String, Date)] { lock.withLock { runs } }
    }

    /// A follower syncs but never drills or copies; once it leads, the newest missed slot of each
    /// runs once (not every missed one), with that slot's time, and later slots run as usual.
    @Test func aFollowerRunsOnlySyncsAndTheNewLeaderRunsTheNewestMissedSlotOnce() throws {
        let leader = Flag()
        let minutely = try Cron("0 * * * * *", dialect: .drctl)
        let jobs = [
            Scheduler.Job(name: "sync", kind: .sync, cron: minutely, slotted: { leader.ran("sync", $0) }),
            Scheduler.Job(name: "drill a", kind: .drill(workload: "a"), cron: minutely, slotted: { leader.ran("drill a", $0) }),
            Scheduler.Job(name: "copy", kind: .copy, cron: minutely, slotted: { leader.ran("copy", $0) }),
        ]
        let s = Scheduler(jobs: jobs, clock: { [t0] in t0 }, leads: { leader.get() }, log: { _ in })
        for m in 1...3 { s.tick(now: t0.addingTimeInterval(Double(m * 60) + 1)); _ = s.waitIdle(timeout: 5) }
        #expect(s.runningJobs.isEmpty)
        #expect(leader.all.map(\.0) == ["sync", "sync", "sync"], "\(leader.all)")
        leader.set(true)
        let takeover = t0.addingTimeInterval(3 * 60 + 20)
        s.tick(now: takeover)
        _ = s.waitIdle(timeout: 5)
        let led = leader.all.dropFirst(3)
        #expect(Set(led.map(\.0)) == ["drill a", "copy"], "each leader-only job once: \(led)")
        #expect(led.allSatisfy { $0.1 == t0.addingTimeInterval(180) }, "for the newest slot passed, 10:03: \(led)")
        s.tick(now: t0.addingTimeInterval(4 * 60 + 1))
        _ = s.waitIdle(timeout: 5)
        #expect(leader.all.filter { $0.1 == t0.addingTimeInterval(240) }.count == 3, "the next slot as scheduled: \(leader.all)")
    }
}

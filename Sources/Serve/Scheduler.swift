import Foundation
import Policy

/// Runs jobs on their cron schedules: never two runs of the same job at once, never two drills
/// of the same workload, at most `maxDrills` drills together (a drill that is due while the
/// slots are full waits for one); a failing job is logged and counted, and the next run comes
/// as scheduled. Time is passed in (`clock`) so the engine is testable without waiting.
/// With several replicas, `leads` says whether this one is the leader: syncs (reads, into this
/// replica's own catalog) run everywhere; drills and copies only on the leader. A follower keeps
/// their due slots pending, and a replica that becomes leader runs the newest slot that passed
/// (once, not each one missed); the job itself checks the slot was not already started.
public final class Scheduler: @unchecked Sendable {
    public struct Job: Sendable {
        public enum Kind: Sendable { case sync, copy, check, drill(workload: String) }
        public var name: String
        public var kind: Kind
        public var cron: Cron
        /// Called with the schedule slot it runs for (the cron time that was due).
        public var run: @Sendable (Date) throws -> Void
        public init(name: String, kind: Kind, cron: Cron, run: @escaping @Sendable () throws -> Void) {
            self.name = name; self.kind = kind; self.cron = cron; self.run = { _ in try run() }
        }
        public init(name: String, kind: Kind, cron: Cron, slotted run: @escaping @Sendable (Date) throws -> Void) {
            self.name = name; self.kind = kind; self.cron = cron; self.run = run
        }
        var workload: String? { if case .drill(let w) = kind { return w } else { return nil } }
        /// Work that writes or notifies (drills, copies, alert checks): the leader's alone.
        public var leaderOnly: Bool { if case .sync = kind { return false } else { return true } }
    }

    public let jobs: [Job]
    public let maxDrills: Int
    let log: @Sendable (String) -> Void
    let clock: @Sendable () -> Date
    let leads: @Sendable () -> Bool
    private let lock = NSCondition()
    private var nextRun: [Date?]
    private var slots: [Date?]
    private var running = Set<Int>()
    private var waiting: [Int] = []         // drills due, waiting for a slot, in order
    private var stopping = false
    private var threads = 0
    private var failureCounts: [String: Int] = [:]
    private var lastTick: Date?

    /// Failed runs by job name (read under the lock: job threads write it).
    public var failures: [String: Int] { lock.withLock { failureCounts } }

    /// Whether the loop of `runForever` still turns: its last tick is at most `within` old. A
    /// stuck scheduler (a deadlock, a thread that never returns the lock) fails the liveness probe.
    public func alive(now: Date, within: TimeInterval = 30) -> Bool {
        lock.withLock { lastTick.map { now.timeIntervalSince($0) <= within } ?? true }
    }

    public init(jobs: [Job], maxDrills: Int = 1, clock: @escaping @Sendable () -> Date = Date.init,
                leads: @escaping @Sendable () -> Bool = { true }, log: @escaping @Sendable (String) -> Void) {
        self.jobs = jobs
        self.maxDrills = max(1, maxDrills)
        self.clock = clock
        self.leads = leads
        self.log = log
        let now = clock()
        nextRun = jobs.map { $0.cron.next(after: now) }
        slots = jobs.map { _ in nil }
    }

    /// The next run of each job (nil: never), by name.
    public var schedule: [(String, Date?)] { lock.withLock { zip(jobs.map(\.name), nextRun).map { ($0, $1) } } }
    public var runningJobs: [String] { lock.withLock { running.sorted().map { jobs[$0].name } } }

    /// Starts every job that is due at `now` (or waiting for a drill slot); returns their indices.
    @discardableResult
    public func tick(now: Date) -> [Int] {
        lock.lock()
        defer { lock.unlock() }
        guard !stopping else { return [] }
        lastTick = now
        let leader = leads()
        for i in jobs.indices {
            guard let due = nextRun[i], due <= now else { continue }
            // A follower leaves the slot due: it is run (or found already run) on taking over.
            if jobs[i].leaderOnly && !leader { continue }
            var slot = due
            for _ in 0..<100_000 {
                guard let n = jobs[i].cron.next(after: slot), n <= now else { break }
                slot = n
            }
            nextRun[i] = jobs[i].cron.next(after: now)
            slots[i] = slot
            if running.contains(i) || waiting.contains(i) {
                log("\(jobs[i].name): due, but the previous run is still going; skipped")
                continue
            }
            waiting.append(i)
        }
        var started: [Int] = []
        var keep: [Int] = []
        for i in waiting {
            // Leadership lost while it waited for room: its schedule slot is the new leader's.
            if jobs[i].leaderOnly && !leader { continue }
            if let w = jobs[i].workload {
                let drills = running.filter { jobs[$0].workload != nil }
                if drills.count >= maxDrills || drills.contains(where: { jobs[$0].workload == w }) { keep.append(i); continue }
            }
            running.insert(i)
            started.append(i)
        }
        waiting = keep
        for i in started { launch(i) }
        return started
    }

    private func launch(_ i: Int) {
        threads += 1
        let job = jobs[i]
        let slot = slots[i] ?? clock()
        let thread = Thread { [self] in
            let t0 = Date()
            log("\(job.name): started")
            do {
                try job.run(slot)
                log("\(job.name): done in \(String(format: "%.1f", Date().timeIntervalSince(t0)))s")
            } catch {
                lock.withLock { failureCounts[job.name, default: 0] += 1 }
                log("\(job.name): FAILED after \(String(format: "%.1f", Date().timeIntervalSince(t0)))s: \(error)")
            }
            lock.lock()
            running.remove(i)
            threads -= 1
            lock.broadcast()
            lock.unlock()
            // A drill slot is free: start whatever waits for one.
            tick(now: clock())
        }
        thread.name = job.name
        thread.start()
    }

    /// Ticks once a second until `stop()`.
    public func runForever() {
        while true {
            let now = clock()
            lock.lock()
            if stopping { lock.unlock(); return }
            lock.unlock()
            tick(now: now)
            let frac = now.timeIntervalSince1970.truncatingRemainder(dividingBy: 1)
            lock.lock()
            _ = lock.wait(until: Date().addingTimeInterval(1.0 - frac + 0.001))
            lock.unlock()
        }
    }

    /// No new runs; waits up to `timeout` for running jobs to end. Returns whether they did.
    @discardableResult
    public func stop(timeout: TimeInterval) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        stopping = true
        waiting.removeAll()
        lock.broadcast()
        let deadline = Date().addingTimeInterval(timeout)
        while threads > 0 && Date() < deadline { _ = lock.wait(until: deadline) }
        return threads == 0
    }

    /// Waits until no job runs (tests).
    public func waitIdle(timeout: TimeInterval) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let deadline = Date().addingTimeInterval(timeout)
        while threads > 0 && Date() < deadline { _ = lock.wait(until: deadline) }
        return threads == 0
    }
}

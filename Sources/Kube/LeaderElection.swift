import Foundation
import Support

/// The spec of a coordination.k8s.io/v1 Lease as client-go's leader election writes it.
public struct LeaseRecord: Equatable, Sendable {
    /// "": nobody holds it (a leader that stepped down released it).
    public var holder: String
    public var durationSeconds: Int
    public var acquireTime: Date?
    public var renewTime: Date?
    public var transitions: Int

    public init(holder: String, durationSeconds: Int, acquireTime: Date?, renewTime: Date?, transitions: Int) {
        self.holder = holder; self.durationSeconds = durationSeconds
        self.acquireTime = acquireTime; self.renewTime = renewTime; self.transitions = transitions
    }

    /// From a Lease object's spec (missing fields as client-go reads them: zero, empty).
    public init(spec: [String: Any]) {
        holder = spec["holderIdentity"] as? String ?? ""
        durationSeconds = spec["leaseDurationSeconds"] as? Int ?? 0
        acquireTime = (spec["acquireTime"] as? String).flatMap(RFC3339.parse)
        renewTime = (spec["renewTime"] as? String).flatMap(RFC3339.parse)
        transitions = spec["leaseTransitions"] as? Int ?? 0
    }

    /// The spec to write: MicroTime is RFC 3339 with microseconds.
    public var spec: [String: Any] {
        var s: [String: Any] = ["holderIdentity": holder, "leaseDurationSeconds": durationSeconds, "leaseTransitions": transitions]
        if let acquireTime { s["acquireTime"] = RFC3339.format(acquireTime) }
        if let renewTime { s["renewTime"] = RFC3339.format(renewTime) }
        return s
    }
}

/// client-go's leader election timing (k8s.io/client-go/tools/leaderelection): a leader that
/// has not renewed for `renewDeadline` stops acting; a follower takes the lease only after it has
/// seen it unchanged for the holder's lease duration. With leaseDuration > renewDeadline, an old
/// leader has stopped before anyone else can start (clock rates, not clocks, must agree).
public struct LeaseTiming: Sendable, Equatable {
    public var leaseDuration: TimeInterval
    public var renewDeadline: TimeInterval
    public var retryPeriod: TimeInterval
    /// The defaults client-go's users (kube-controller-manager, controller-runtime) run with.
    public static let standard = LeaseTiming(leaseDuration: 15, renewDeadline: 10, retryPeriod: 2)

    public init(leaseDuration: TimeInterval, renewDeadline: TimeInterval, retryPeriod: TimeInterval) {
        self.leaseDuration = leaseDuration; self.renewDeadline = renewDeadline; self.retryPeriod = retryPeriod
    }

    /// client-go's own checks (NewLeaderElector), with its jitter factor 1.2.
    public func problems() -> [String] {
        var out: [String] = []
        if leaseDuration <= renewDeadline { out.append("the lease duration must be greater than the renew deadline") }
        if renewDeadline <= 1.2 * retryPeriod { out.append("the renew deadline must be greater than 1.2 × the retry period") }
        if leaseDuration < 1 || renewDeadline <= 0 || retryPeriod <= 0 { out.append("every period must be positive (the lease duration at least 1 s)") }
        return out
    }
}

/// One replica's view of the election, as client-go's tryAcquireOrRenew keeps it: the last
/// record it saw and when, and when its last renewal that succeeded began. "When" is a
/// monotonic reading (`tick`, seconds), as client-go measures with Go's monotonic clock: a
/// wall-clock step back must not keep a cut-off leader acting past its lease. The wall time
/// (`now`) only goes into the record. Pure: the caller reads and writes the Lease.
public struct LeaseElection: Sendable {
    public let identity: String
    public let timing: LeaseTiming
    public private(set) var observed: LeaseRecord?
    public private(set) var observedTick: TimeInterval?
    /// The start of the last attempt that wrote the lease as ours: the deadlines count from
    /// before the request went out, so a slow answer never extends them.
    public private(set) var renewedTick: TimeInterval?

    public init(identity: String, timing: LeaseTiming) {
        self.identity = identity
        self.timing = timing
    }

    /// Whether this replica may act as leader at monotonic reading `tick`: its lease is ours and
    /// was renewed within the renew deadline.
    public func leads(tick: TimeInterval) -> Bool {
        guard observed?.holder == identity, let renewedTick else { return false }
        return tick - renewedTick < timing.renewDeadline
    }

    /// `leads(tick:)` with the wall clock as the reading (tests that never step the clock).
    public func leads(at now: Date) -> Bool { leads(tick: now.timeIntervalSinceReferenceDate) }

    /// Whether another holder's lease, as last seen, has not expired by `tick`.
    public func anotherHolds(tick: TimeInterval) -> Bool {
        guard let o = observed, !o.holder.isEmpty, o.holder != identity, let at = observedTick else { return false }
        return at + TimeInterval(o.durationSeconds) > tick
    }

    /// What to write at `now` (monotonic reading `tick`), having read `current` (nil: no Lease
    /// yet), or nil when another holder's lease is still valid. A new record seen starts its
    /// holder's term afresh.
    public mutating func attempt(current: LeaseRecord?, now: Date, tick: TimeInterval? = nil) -> LeaseRecord? {
        let tick = tick ?? now.timeIntervalSinceReferenceDate
        let fresh = LeaseRecord(holder: identity, durationSeconds: Int(timing.leaseDuration.rounded(.up)), acquireTime: now, renewTime: now, transitions: 0)
        guard let current else { return fresh }
        if current != observed {
            observed = current
            observedTick = tick
        }
        let ours = current.holder == identity
        if !current.holder.isEmpty && !ours, anotherHolds(tick: tick) {
            return nil
        }
        var next = fresh
        if ours {
            next.acquireTime = current.acquireTime ?? now
            next.transitions = current.transitions
        } else {
            next.transitions = current.transitions + 1
        }
        return next
    }

    /// The write of `record`, begun at monotonic reading `startedTick`, succeeded at `tick`.
    public mutating func wrote(_ record: LeaseRecord, startedTick: TimeInterval, tick: TimeInterval) {
        observed = record
        observedTick = tick
        if record.holder == identity { renewedTick = startedTick }
    }

    /// `wrote` with wall times as readings (tests that never step the clock).
    public mutating func wrote(_ record: LeaseRecord, startedAt: Date, now: Date) {
        wrote(record, startedTick: startedAt.timeIntervalSinceReferenceDate, tick: now.timeIntervalSinceReferenceDate)
    }

    /// The record that hands the lease back on a clean stop (client-go ReleaseOnCancel): no
    /// holder, a one-second duration, so a follower takes over at its next retry.
    public func release(now: Date) -> LeaseRecord? {
        guard let o = observed, o.holder == identity else { return nil }
        return LeaseRecord(holder: "", durationSeconds: 1, acquireTime: now, renewTime: now, transitions: o.transitions)
    }
}

/// Seconds on the system's monotonic clock (CLOCK_MONOTONIC): never steps with the wall clock.
public func monotonicSeconds() -> TimeInterval {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return TimeInterval(ts.tv_sec) + TimeInterval(ts.tv_nsec) / 1e9
}

/// Runs an election on a Lease through the API server: tries every retry period, renews while
/// leading, and calls `lost` once when a renewal has not succeeded within the deadline.
public final class LeaderElector: @unchecked Sendable {
    public let namespace: String
    public let name: String
    let kube: KubeClient
    let clock: @Sendable () -> Date
    /// Lease timing reads this, never the wall clock.
    let monotonic: @Sendable () -> TimeInterval
    let log: @Sendable (String) -> Void
    private let lock = NSCondition()
    private var inFlight = false
    private var election: LeaseElection
    private var resourceVersion: String?
    private var stopping = false
    /// Set by `resign()`: from then on this replica does not lead, whatever the lease says.
    private var resigned = false
    private var since: Date?

    public init(kube: KubeClient, namespace: String, name: String, identity: String, timing: LeaseTiming = .standard,
                clock: @escaping @Sendable () -> Date = Date.init, monotonic: @escaping @Sendable () -> TimeInterval = monotonicSeconds,
                log: @escaping @Sendable (String) -> Void) {
        self.kube = kube; self.namespace = namespace; self.name = name
        self.clock = clock; self.monotonic = monotonic; self.log = log
        election = LeaseElection(identity: identity, timing: timing)
    }

    public var identity: String { election.identity }

    /// Whether this replica may act as leader now (read by the scheduler before each start).
    public var isLeader: Bool { lock.withLock { !resigned && election.leads(tick: monotonic()) } }

    /// Who holds the lease as last seen ("" or nil: nobody).
    public var holder: String? { lock.withLock { election.observed?.holder } }

    /// When this replica's current term began (nil: not leading).
    public var leadingSince: Date? { lock.withLock { since } }

    /// Whether another replica holds a lease that has not expired by our observation: while
    /// nobody does, a follower keeps exporting what the leader would.
    public var anotherLeads: Bool {
        lock.withLock { election.anotherHolds(tick: monotonic()) }
    }

    var path: String { "/apis/coordination.k8s.io/v1/namespaces/\(namespace)/leases/\(name)" }

    /// One try: read the Lease, write it as ours if we may. Returns whether we hold it now.
    /// After `resign()` it only renews a lease already ours (the teardown keeps it until
    /// `release()`), and after `release()` began it writes nothing.
    @discardableResult
    public func tryAcquireOrRenew() -> Bool {
        let started = monotonic()
        do {
            let current: LeaseRecord?
            var rv: String?
            do {
                let o = try kube.request("GET", path)
                current = LeaseRecord(spec: o["spec"] as? [String: Any] ?? [:])
                rv = (o["metadata"] as? [String: Any])?["resourceVersion"] as? String
            } catch let e as KubeError where e.isNotFound {
                current = nil
            }
            let next = lock.withLock { () -> LeaseRecord? in
                let n = election.attempt(current: current, now: clock(), tick: monotonic())
                if stopping || (resigned && current?.holder != election.identity) { return nil }
                return n
            }
            guard let next else { return false }
            // The resourceVersion this try read: a write over anyone else's since is 409 Conflict.
            try write(next, resourceVersion: current == nil ? nil : rv)
            lock.withLock { election.wrote(next, startedTick: started, tick: monotonic()) }
            return true
        } catch {
            log("lease \(namespace)/\(name): \(error)")
            return false
        }
    }

    /// Creates the Lease (`resourceVersion` nil) or replaces the version read.
    func write(_ record: LeaseRecord, resourceVersion rv: String?) throws {
        var meta: [String: Any] = ["name": name, "namespace": namespace, "labels": ["app.kubernetes.io/name": "drctl"]]
        if let rv { meta["resourceVersion"] = rv }
        let object: [String: Any] = ["apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": record.spec]
        let body = Array(try JSONSerialization.data(withJSONObject: object))
        let answer = rv == nil ? try kube.request("POST", "/apis/coordination.k8s.io/v1/namespaces/\(namespace)/leases", body: body)
                               : try kube.request("PUT", path, body: body)
        lock.withLock { resourceVersion = (answer["metadata"] as? [String: Any])?["resourceVersion"] as? String }
    }

    /// Campaigns until leading, calls `started`, renews every retry period, and calls `lost`
    /// once when leadership is lost: when the renew deadline passes, measured by
    /// the clock on a thread of its own, so a renewal that hangs in the network cannot extend it.
    /// Returns once `release()` began.
    public func run(started: @escaping @Sendable () -> Void, lost: @escaping @Sendable () -> Void) {
        let timing = election.timing
        Thread.detachNewThread { [self] in
            var was = false
            while !lock.withLock({ stopping || resigned }) {
                let now = isLeader
                if was && !now {
                    if lock.withLock({ stopping || resigned }) { return }
                    log("lease \(namespace)/\(name): \(identity) could not renew within \(Int(timing.renewDeadline)) s; no longer the leader")
                    lock.withLock { since = nil }
                    lost()
                    return
                }
                was = now
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        var leading = false
        while true {
            let go = lock.withLock { () -> Bool in
                if stopping { return false }
                inFlight = true
                return true
            }
            guard go else { break }
            tryAcquireOrRenew()
            lock.withLock { inFlight = false; lock.broadcast() }
            if !leading && isLeader {
                leading = true
                lock.withLock { since = clock() }
                log("lease \(namespace)/\(name): \(identity) is the leader")
                started()
            }
            // client-go's JitterUntil for the follower (factor 1.2); a leader renews on the period.
            Thread.sleep(forTimeInterval: leading ? timing.retryPeriod : timing.retryPeriod * Double.random(in: 1...1.2))
        }
    }

    /// Stops leading at once (nothing new starts) and never takes the lease again; the lease
    /// already held is still renewed, so the work in hand is torn down before anyone else may
    /// start, until `release()` hands it back.
    public func resign() {
        lock.withLock { resigned = true; since = nil }
    }

    /// Hands the lease back (client-go's ReleaseOnCancel): no holder, a one-second duration, so
    /// a follower takes over at its next try. Waits for a try in flight first, so no renewal
    /// lands after it. Bounded by the transport's timeouts.
    public func release() {
        lock.lock()
        resigned = true
        stopping = true
        since = nil
        let deadline = Date().addingTimeInterval(6)
        while inFlight && Date() < deadline { _ = lock.wait(until: deadline) }
        let r = election.release(now: clock())
        let rv = resourceVersion
        lock.unlock()
        guard let r, let rv else { return }
        do {
            try write(r, resourceVersion: rv)
            log("lease \(namespace)/\(name): released")
        } catch {
            log("lease \(namespace)/\(name): could not release (a follower takes over when it expires): \(error)")
        }
    }
}

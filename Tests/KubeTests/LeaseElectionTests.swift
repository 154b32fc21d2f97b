import Foundation
import Testing
@testable import Kube

/// client-go's tryAcquireOrRenew, by the replica's own clock: who may write the Lease when.
@Suite struct LeaseElectionTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let timing = LeaseTiming.standard

    @Test func noLeaseIsTakenAtOnce() {
        var a = LeaseElection(identity: "a", timing: timing)
        let r = a.attempt(current: nil, now: t0)
        #expect(r?.holder == "a" && r?.durationSeconds == 15 && r?.transitions == 0)
        a.wrote(r!, startedAt: t0, now: t0)
        #expect(a.leads(at: t0.addingTimeInterval(9.9)))
        #expect(!a.leads(at: t0.addingTimeInterval(10)), "no renewal for the renew deadline: no longer acting")
    }

    /// A follower waits the holder's lease duration from when it first saw the record, however
    /// old the record's renewTime claims to be (clocks differ; only elapsed time counts).
    @Test func aFollowerTakesOverOnlyAfterTheLeaseDurationItObserved() {
        var b = LeaseElection(identity: "b", timing: timing)
        let held = LeaseRecord(holder: "a", durationSeconds: 15, acquireTime: t0.addingTimeInterval(-3600), renewTime: t0.addingTimeInterval(-3600), transitions: 4)
        #expect(b.attempt(current: held, now: t0) == nil)
        #expect(b.attempt(current: held, now: t0.addingTimeInterval(14.9)) == nil)
        var renewed = held
        renewed.renewTime = t0.addingTimeInterval(14)
        #expect(b.attempt(current: renewed, now: t0.addingTimeInterval(16)) == nil, "a renewal restarts the wait")
        let taken = b.attempt(current: renewed, now: t0.addingTimeInterval(31.1))
        #expect(taken?.holder == "b" && taken?.transitions == 5 && taken?.acquireTime == t0.addingTimeInterval(31.1))
        #expect(!b.leads(at: t0.addingTimeInterval(31.2)), "not leading until the write succeeded")
    }

    /// The old leader stops acting (renew deadline, 10 s after its last renewal began) before a
    /// follower can take over (lease duration, 15 s after it saw that renewal): never two at once.
    @Test func theOldLeaderStopsBeforeAFollowerCanStart() {
        var a = LeaseElection(identity: "a", timing: timing)
        var b = LeaseElection(identity: "b", timing: timing)
        let first = a.attempt(current: nil, now: t0)!
        a.wrote(first, startedAt: t0, now: t0)
        // b reads the record as soon as it is written, then a is cut off.
        #expect(b.attempt(current: first, now: t0) == nil)
        var t = t0
        var firstLeaderB: Date?
        var lastLeaderA: Date?
        while t < t0.addingTimeInterval(30) {
            if a.leads(at: t) { lastLeaderA = t }
            if firstLeaderB == nil, let r = b.attempt(current: first, now: t) { b.wrote(r, startedAt: t, now: t); firstLeaderB = t }
            t = t.addingTimeInterval(0.1)
        }
        #expect(lastLeaderA! < firstLeaderB!, "a last acted at \(lastLeaderA!), b first at \(firstLeaderB!)")
        #expect(firstLeaderB!.timeIntervalSince(t0) >= 15)
    }

    @Test func aRenewalKeepsTheAcquireTimeAndTransitions() {
        var a = LeaseElection(identity: "a", timing: timing)
        let mine = LeaseRecord(holder: "a", durationSeconds: 15, acquireTime: t0, renewTime: t0, transitions: 2)
        let r = a.attempt(current: mine, now: t0.addingTimeInterval(2))
        #expect(r?.acquireTime == t0 && r?.transitions == 2 && r?.renewTime == t0.addingTimeInterval(2))
    }

    /// A released lease (no holder) is free at once; the release hands over with a 1 s duration.
    @Test func aReleasedLeaseIsTakenAtTheNextTry() {
        var a = LeaseElection(identity: "a", timing: timing)
        let r = a.attempt(current: nil, now: t0)!
        a.wrote(r, startedAt: t0, now: t0)
        let released = a.release(now: t0.addingTimeInterval(1))!
        #expect(released.holder == "" && released.durationSeconds == 1)
        var b = LeaseElection(identity: "b", timing: timing)
        #expect(b.attempt(current: released, now: t0.addingTimeInterval(1))?.holder == "b")
    }

    @Test func timingIsCheckedAsClientGoChecksIt() {
        #expect(LeaseTiming.standard.problems().isEmpty)
        #expect(!LeaseTiming(leaseDuration: 10, renewDeadline: 10, retryPeriod: 2).problems().isEmpty)
        #expect(!LeaseTiming(leaseDuration: 15, renewDeadline: 2, retryPeriod: 2).problems().isEmpty)
    }

    @Test func theSpecRoundTripsInMicroTime() {
        let r = LeaseRecord(holder: "a", durationSeconds: 15, acquireTime: t0.addingTimeInterval(0.123456), renewTime: t0, transitions: 1)
        let spec = r.spec
        #expect((spec["renewTime"] as? String)?.hasSuffix(".000000Z") == true)
        #expect(LeaseRecord(spec: spec) == r)
    }

    /// The wall clock stepped back a minute (NTP, a VM resumed) while a leader is cut off: by the
    /// monotonic readings it stops at its renew deadline all the same, and a follower that saw
    /// its last renewal takes over only after the lease duration, by its own monotonic readings.
    @Test func aWallClockStepBackKeepsNoCutOffLeaderActing() {
        var a = LeaseElection(identity: "a", timing: timing)
        let r = a.attempt(current: nil, now: t0, tick: 100)
        a.wrote(r!, startedTick: 100, tick: 100.1)
        // 9.9 s later by the monotonic clock, the wall clock says 50 s *earlier*.
        #expect(a.leads(tick: 109.9))
        #expect(!a.leads(tick: 110), "cut off at the renew deadline whatever the wall clock says")
        var b = LeaseElection(identity: "b", timing: timing)
        #expect(b.attempt(current: r, now: t0.addingTimeInterval(-60), tick: 5000) == nil)
        #expect(b.attempt(current: r, now: t0.addingTimeInterval(-120), tick: 5014.9) == nil, "the wall clock going back changes nothing")
        #expect(b.attempt(current: r, now: t0.addingTimeInterval(-119), tick: 5015.1)?.holder == "b")
    }
}

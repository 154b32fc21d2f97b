import Foundation
import Testing
@testable import Serve
import Records
import Storage
import Support

/// Slot claims are drctl's records: what anyone with the bucket's keys writes there is no claim.
struct SlotJournalTests {
    static let ring = RecordKeyring(keys: [RecordKey(id: "test", secret: [UInt8](repeating: 3, count: 32))])
    static let slot = Date(timeIntervalSince1970: 1_800_000_000)

    static func journal(_ s: MemoryStorage) -> SlotJournal {
        var j = SlotJournal(storage: s, drctlPrefix: "drctl", job: "drill-app")
        j.keys = ring
        return j
    }

    @Test func aForgedClaimDoesNotSuppressTheSlot() throws {
        let s = MemoryStorage()
        let key = "drctl/slots/drill-app/\(SlotJournal.stamp(Self.slot)).json"
        let forged = SlotJournal.Claim(job: "drill-app", slot: Self.slot, holder: "attacker", startedAt: Self.slot)
        try s.put(key, bytes: Array(try JSONCoding.encoder().encode(forged)))
        #expect(try Self.journal(s).claim(slot: Self.slot, holder: "me", now: Self.slot) == nil, "the slot is ours to run")
        // Ours now, sealed: a second claim finds it taken.
        #expect(try Self.journal(s).claim(slot: Self.slot, holder: "other", now: Self.slot)?.holder == "me")
        // A sealed claim copied to a future slot's key is no claim there.
        let future = Self.slot.addingTimeInterval(86400)
        try s.put("drctl/slots/drill-app/\(SlotJournal.stamp(future)).json", bytes: s.contents(key)!)
        #expect(try Self.journal(s).claim(slot: future, holder: "me", now: future) == nil)
    }

    @Test func plantedClaimsAndForgedEndsDoNotSteerAdoption() throws {
        let s = MemoryStorage(modified: Self.slot)
        let j = Self.journal(s)
        #expect(try j.claim(slot: Self.slot, holder: "gone", now: Self.slot) == nil)
        for i in 1...60 {
            let at = Self.slot.addingTimeInterval(Double(i) * 3600)
            try s.put("drctl/slots/drill-app/\(SlotJournal.stamp(at)).json",
                      bytes: Array(try JSONCoding.encoder().encode(SlotJournal.Claim(job: "drill-app", slot: at, holder: "planted", startedAt: at))))
        }
        let open = try j.unfinished(modifiedBefore: Date().addingTimeInterval(3600), limit: 50)
        #expect(open.map(\.holder) == ["gone"], "\(open.map(\.holder))")
        // An end nobody sealed closes nothing.
        try s.put("drctl/slots/drill-app/\(SlotJournal.stamp(Self.slot)).done.json",
                  bytes: Array(try JSONCoding.encoder().encode(SlotJournal.End(result: "done", by: "attacker", endedAt: Self.slot))))
        #expect(try j.unfinished(modifiedBefore: Date().addingTimeInterval(3600)).map(\.holder) == ["gone"])
        try j.end(slot: Self.slot, result: "adopted", by: "me", now: Self.slot)
        #expect(try j.unfinished(modifiedBefore: Date().addingTimeInterval(3600)).isEmpty)
    }

    /// Two replicas claiming one slot at once (one of them just lost its lease): the store's
    /// conditional create lets exactly one run it.
    @Test func ofTwoRacingReplicasOneRunsTheSlot() throws {
        for _ in 0..<20 {
            let s = MemoryStorage()
            let got = try Parallel.map(["a", "b", "c"], threads: 3) { holder in try Self.journal(s).claim(slot: Self.slot, holder: holder, now: Self.slot) == nil }
            #expect(got.filter { $0 }.count == 1, "\(got)")
        }
    }
}

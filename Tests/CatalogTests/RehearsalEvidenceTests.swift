import Foundation
import Records
import Storage
import Testing
@testable import Catalog

/// A rehearsal's record alone: the site RTO and critical path it derives, what counts as the
/// site's, and that only a sealed record in its own place is read.
struct RehearsalEvidenceTests {
    static let t0 = Date(timeIntervalSince1970: 1_795_757_517)

    static func workload(_ name: String, start: Double, healthy: Double, waited: String? = nil, result: DrillEvidence.Result = .passed,
                         phases: [String: Double] = ["wal_replay": 1]) -> RehearsalEvidence.Workload {
        .init(workload: name, result: result, error: nil, drillID: "d-\(name)", startedAfter: start, healthyAfter: healthy, rtoSeconds: healthy - start,
              rtoObjectiveSeconds: 1800, rpoSeconds: 5, rpoObjectiveSeconds: 86400, phases: phases, waitedFor: waited, dependsOn: waited.map { [$0] } ?? [])
    }

    static func rehearsal(_ id: String, from: String = "offsite", at: Double = 0, _ ws: [RehearsalEvidence.Workload]) -> RehearsalEvidence {
        RehearsalEvidence(id: id, from: from, mode: "host", host: "h", startedAt: t0.addingTimeInterval(at), finishedAt: t0.addingTimeInterval(at + 60),
                          siteRTOObjectiveSeconds: 3600, parallel: 2, workloads: ws)
    }

    @Test func theSiteIsBackWhenItsLastWorkloadIsAndThePathLeadsThere() {
        let e = Self.rehearsal("r1", [Self.workload("db", start: 0, healthy: 40, phases: ["download_unpack": 10, "wal_replay": 25]),
                                      Self.workload("auth", start: 0, healthy: 20),
                                      Self.workload("app", start: 40, healthy: 55, waited: "db", phases: ["velero_restore": 3, "checks": 9])])
        #expect(e.siteRTOSeconds == 55 && e.result == .passed && e.met && e.largestWorkloadRTOObjectiveSeconds == 1800)
        #expect(e.criticalPath == ["db", "app"] && e.criticalPhase == "checks")
        let failed = Self.rehearsal("r2", [Self.workload("db", start: 0, healthy: 3, result: .failed), Self.workload("app", start: 0, healthy: 9)])
        #expect(failed.result == .failed && !failed.met, "a workload that did not come back fails the site")
    }

    @Test func onlyAWholeSiteRehearsalFromThePolicysCopySpeaksForTheSite() {
        let all = ["db", "app"]
        let whole = Self.rehearsal("whole", at: 0, [Self.workload("db", start: 0, healthy: 9), Self.workload("app", start: 9, healthy: 12, waited: "db")])
        let partial = Self.rehearsal("partial", at: 100, [Self.workload("app", start: 0, healthy: 2)])
        let elsewhere = Self.rehearsal("elsewhere", from: "disk", at: 200, [Self.workload("db", start: 0, healthy: 1), Self.workload("app", start: 0, healthy: 1)])
        #expect(RehearsalEvidence.wholeSite([partial, elsewhere, whole], from: "offsite", workloads: all).map(\.id) == ["whole"])
    }

    @Test func onlyASealedRecordInItsOwnPlaceIsRead() throws {
        let keys = try RecordKeyring.parse("drctl-record-key k1 " + String(repeating: "ab", count: 32) + "\n", origin: "test")
        let store = MemoryStorage()
        let e = Self.rehearsal("20261127T053157Z-1", [Self.workload("db", start: 0, healthy: 9)])
        let (key, bytes) = try RehearsalEvidence.sealed(e, drctlPrefix: "drctl", keys: keys)
        try store.put(key, bytes: bytes, contentType: "application/json")
        // The same sealed bytes under another id's key, and an unsealed record: neither is read.
        try store.put("drctl/rehearsals/20261128T000000Z-2.json", bytes: bytes, contentType: "application/json")
        try store.put("drctl/rehearsals/20261129T000000Z-3.json", bytes: Array(try RehearsalEvidence.encoder.encode(e)), contentType: "application/json")
        let found = try RehearsalEvidence.all(store, drctlPrefix: "drctl", keys: keys)
        #expect(found.rehearsals.map(\.id) == [e.id] && found.unauthenticated.count == 2, "\(found.unauthenticated)")
    }
}

import Foundation
import Testing
import TestSupport

/// The RTO predicted before a drill finds it: two drills of a real barman-cloud archive measure
/// the rates, more WAL makes the prediction of a restore started now grow, and the next drill
/// takes a time within the range it was predicted with.
@Suite(.serialized) struct RTOPredictionTests {
    @Test func morWALPredictsALongerRestoreAndTheNextDrillLandsInTheRange() throws {
        let db = try ArchivedDatabase(rgw: try RGW.get(), bucket: "predict")
        let firstBackup = Date()
        let policies = db.work + "/policies"
        try FileManager.default.createDirectory(atPath: policies, withIntermediateDirectories: true)
        try (db.rgw.objectStorePolicy(bucket: db.bucket) + RGW.appPolicy(cluster: "app-db", rpo: "24h", rto: "10m", spec: """
              drill:
                schedule: "0 5 * * *"
                checks:
                  - sql: {cluster: app-db, database: postgres, query: "select count(*) from big", expect: ">= 100000"}

            """)).write(toFile: policies + "/p.yaml", atomically: true, encoding: .utf8)
        let env = db.drctlEnvironment
        func writeWAL(_ rows: Int) throws {
            _ = try db.psql("create table if not exists big(id bigint, pad text); insert into big select g, repeat(md5(g::text), 6) from generate_series(1, \(rows)) g")
            try db.switchAndWaitArchived()
        }
        func verify() throws -> [String: Any] {
            let (st, out) = try run(drctlBinary, ["verify", "app", "--policies", policies, "--scratch-dir", db.work + "/scratch", "-o", "json", "--quiet"], env: env)
            try #require(st == 0, "\(out)")
            return try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]]).first ?? [:]
        }
        func predicted() throws -> [String: Any] {
            let (st, out) = try run(drctlBinary, ["status", "app", "--policies", policies, "-o", "json"], env: env)
            try #require(st == 0 || st == 4, "\(out)")
            let status = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]]).first ?? [:]
            return try #require(status["predictedRTO"] as? [String: Any], "\(out)")
        }

        try writeWAL(120_000)
        let (noneSt, none) = try run(drctlBinary, ["status", "app", "--policies", policies, "-o", "json"], env: env)
        #expect((noneSt == 0 || noneSt == 4) && !none.contains("predictedRTO"), "no drill, no prediction: \(none)")
        _ = try verify()
        _ = try verify()
        let before = try predicted()
        #expect((before["drills"] as? [String])?.count == 2 && (before["replayBytesPerSecond"] as? Double ?? 0) > 0, "two drills measured the rates: \(before)")

        try writeWAL(360_000)
        let after = try predicted()
        let (s0, s1) = (try #require(before["seconds"] as? Double), try #require(after["seconds"] as? Double))
        #expect(s1 > s0 && (after["walBytes"] as? Double ?? 0) > (before["walBytes"] as? Double ?? 0), "more WAL to replay, a longer restore: \(before) -> \(after)")
        let (_, text) = try run(drctlBinary, ["status", "app", "--policies", policies], env: env)
        print("$ drctl status app  # after more WAL\n" + text)
        #expect(text.contains("A restore started now (predicted from the drills' measured rates):") && text.contains("app: about "), "\(text)")

        // The next drill: predicted at its start from the same rates, measured against it.
        let drill = try verify()
        let rto = try #require(drill["rtoSeconds"] as? Double)
        let own = try #require(drill["predictedRTO"] as? [String: Any], "the drill records its prediction: \(drill)")
        let (low, high) = (try #require(after["lowSeconds"] as? Double), try #require(after["highSeconds"] as? Double))
        #expect(rto >= low && rto <= high, "measured \(rto) s within the stated range \(low)...\(high) s (predicted \(s1) s)")
        #expect(abs((own["seconds"] as? Double ?? 0) - s1) < max(1, s1 * 0.2), "the drill's own prediction is status's: \(own) vs \(s1)")

        // lint with what was measured: a second base backup a minute after the first gives the
        // archive's WAL rate; at the replay rate the drills measured, daily base backups miss 10m.
        let wait = 65 - Date().timeIntervalSince(firstBackup)
        if wait > 0 { usleep(useconds_t(wait * 1_000_000)) }
        try db.baseBackup()
        let (lst, lint) = try run(drctlBinary, ["lint", policies, "--measured"], env: env)
        print("$ drctl lint --measured\n" + lint)
        #expect(lst == 0 && lint.firstMatch(of: /warning: spec\.cnpg\[\]\.baseBackup\.schedule: app-db: at .+ of WAL and .+ replay, base backups every 1d give a .+ RTO \(objective 10m\); every \d+h meets it/) != nil,
                "\(lint)")

        let (rst, report) = try run(drctlBinary, ["report", "--policies", policies, "--since", "1d"], env: env)
        #expect(rst == 0 && report.contains("## Predicted against measured RTO") && report.contains("drills took a time within their predicted range"), "\(report)")
    }
}

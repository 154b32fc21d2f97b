import Foundation
import Testing
@testable import Layout

struct WALTests {
    @Test func segmentNamesAndLSNs() throws {
        let s = try #require(WALSegment(name: "00000002000000010000000D"))
        #expect(s.timeline == 2 && s.log == 1 && s.segment == 0x0D)
        #expect(s.hashDirectory == "0000000200000001")
        #expect(s.startLSN(segmentSize: 16 << 20) == LSN(parsing: "1/D000000"))
        #expect(WALSegment(timeline: 2, lsn: LSN(parsing: "1/D00B0B0")!, segmentSize: 16 << 20) == s)
        let last = WALSegment(name: "0000000100000000000000FF")!
        #expect(last.next(segmentSize: 16 << 20).name == "000000010000000100000000")
        for bad in ["0000000100000000000000fF", "00000001000000000000000", "0000000100000000000000GG", "000000010000000000000001.gz"] {
            #expect(WALSegment(name: bad) == nil, "\(bad)")
        }
        #expect(LSN(parsing: "0/6000028")!.description == "0/6000028")
        #expect(LSN(parsing: "nope") == nil)
    }
}

struct BarmanLayoutTests {
    let layout = BarmanLayout(root: "/cnpg/")
    let seg = WALSegment(name: "000000010000000000000006")!

    @Test func recognisesEveryKindOfKey() {
        let cases: [(String, BarmanObject?)] = [
            ("cnpg/db/base/20261127T041950/backup.info", .backupInfo(server: "db", backupID: "20261127T041950")),
            ("cnpg/db/base/20261127T041950/data.tar", .backupArchive(server: "db", backupID: "20261127T041950", name: "data", compression: nil)),
            ("cnpg/db/base/20261127T041950/data.tar.gz", .backupArchive(server: "db", backupID: "20261127T041950", name: "data", compression: .gzip)),
            ("cnpg/db/base/20261127T041950/16385.tar.zst", .backupArchive(server: "db", backupID: "20261127T041950", name: "16385", compression: .zstd)),
            ("cnpg/db/wals/0000000100000000/000000010000000000000006.gz", .walSegment(server: "db", segment: seg, compression: .gzip)),
            ("cnpg/db/wals/0000000100000000/000000010000000000000006", .walSegment(server: "db", segment: seg, compression: nil)),
            ("cnpg/db/wals/0000000100000000/000000010000000000000006.partial.gz", .partialSegment(server: "db", segment: seg, compression: .gzip)),
            ("cnpg/db/wals/0000000100000000/000000010000000000000006.00000028.backup.gz",
             .backupHistory(server: "db", segment: seg, offset: 0x28, compression: .gzip)),
            ("cnpg/db/wals/00000002.history.gz", .timelineHistory(server: "db", timeline: 2, compression: .gzip)),
            ("cnpg/db/wals/00000002.history", .timelineHistory(server: "db", timeline: 2, compression: nil)),
            // Not barman's: ignored, as barman ignores them.
            ("cnpg/db/wals/0000000200000000/000000010000000000000006.gz", nil),   // wrong hash dir
            ("cnpg/db/base/latest/backup.info", nil),
            ("cnpg/db/base/20261127T041950/notes.txt", nil),
            ("cnpg/db/wals/0000000100000000/000000010000000000000006.tmp", nil),
            ("other/db/base/20261127T041950/backup.info", nil),
            ("cnpg/db/whatever", nil),
        ]
        for (key, expected) in cases {
            #expect(layout.parse(key) == expected, "\(key)")
            if let expected { #expect(layout.key(for: expected) == key, "round trip of \(key)") }
        }
    }

    @Test func rootAtBucketLevel() {
        let l = BarmanLayout(root: "")
        #expect(l.parse("db/base/20261127T041950/backup.info") == .backupInfo(server: "db", backupID: "20261127T041950"))
        #expect(l.walsPrefix("db") == "db/wals/")
    }
}

struct BackupInfoTests {
    static let sample = """
        backup_label='START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\\nLABEL: it\\'s "quoted" \\\\ ok\\n'
        backup_name=nightly
        begin_time=2026-11-27 04:00:01.5+00:00
        begin_wal=000000010000000000000004
        begin_xlog=0/4000028
        cluster_size=4242
        compression=None
        copy_stats={'total_time': 1.5, 'number_of_workers': 2}
        end_time=2026-11-27 05:00:02+01:00
        end_wal=000000010000000000000004
        end_xlog=0/4000138
        error=None
        included_files=['/a.conf']
        some_future_key=whatever it is
        status=DONE
        systemid=7712701172763930128
        tablespaces=[('tbs', 16385, '/x')]
        timeline=1
        version=150018
        xlog_segment_size=16777216
        """

    @Test func parsesPythonLiterals() throws {
        let info = try BackupInfo(parsing: Self.sample)
        #expect(info.status == .done)
        #expect(info.backupLabel == "START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\nLABEL: it's \"quoted\" \\ ok\n")
        #expect(info.beginTime == Date(timeIntervalSince1970: 1_795_752_001.5))
        #expect(info.endTime == Date(timeIntervalSince1970: 1_795_752_002))   // 05:00:02+01:00
        #expect(info.beginWAL?.name == "000000010000000000000004")
        #expect(info.endLSN == LSN(parsing: "0/4000138"))
        #expect(info.timeline == 1 && info.version == 150018 && info.segmentSize == 16 << 20)
        #expect(info.error == nil && info["compression"] == PyValue.none)
        #expect(info["copy_stats"] == .raw("{'total_time': 1.5, 'number_of_workers': 2}"))
        #expect(info["some_future_key"] == .raw("whatever it is"))
    }

    @Test func startedAndFailed() throws {
        let started = try BackupInfo(parsing: "status=STARTED\nend_time=None\nbegin_wal=000000010000000000000008\n")
        #expect(started.status == .started && started.endTime == nil)
        let failed = try BackupInfo(parsing: "status=FAILED\nerror='failure uploading data (connection reset)'\n")
        #expect(failed.status == .failed && failed.error == "failure uploading data (connection reset)")
    }

    @Test func rejectsGarbage() {
        #expect(throws: BackupInfoError.self) { try BackupInfo(parsing: "no equals sign here\n") }
        #expect(throws: BackupInfoError.self) { try BackupInfo(parsing: "status='DONE\n") }
        #expect(throws: BackupInfoError.self) { try BackupInfo(parsing: "begin_wal=x\n") }   // no status
    }

    @Test func timelineHistory() throws {
        let h = try TimelineHistory(timeline: 2, parsing: "1\t0/D00B0B0\tno recovery target specified\n")
        #expect(h.entries == [.init(parent: 1, switchLSN: LSN(parsing: "0/D00B0B0")!, reason: "no recovery target specified")])
        #expect(throws: BackupInfoError.self) { try TimelineHistory(timeline: 2, parsing: "garbage\n") }
    }

    /// The facts observed from real barman-cloud 3.19.1 output (../shared/reference).
    static let layoutDoc: String? = {
        let p = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/reference/barman-cloud/LAYOUT.md").path
        return try? String(contentsOfFile: p, encoding: .utf8)
    }()

    static func codeBlock(after heading: String) -> String? {
        guard let doc = layoutDoc, let h = doc.range(of: heading), let start = doc.range(of: "```\n", range: h.upperBound..<doc.endIndex),
              let end = doc.range(of: "\n```", range: start.upperBound..<doc.endIndex) else { return nil }
        return String(doc[start.upperBound..<end.lowerBound])
    }

    @Test func observedBackupInfoFiles() throws {
        guard let done = Self.codeBlock(after: "### 6.3"), let started = Self.codeBlock(after: "### 6.4") else {
            print("SKIP: ../shared/reference/barman-cloud/LAYOUT.md not found"); return
        }
        let d = try BackupInfo(parsing: done)
        #expect(d.status == .done && d.endTime != nil && d.beginWAL != nil && d.endLSN != nil && d.version == 150018)
        #expect(d.backupLabel?.hasPrefix("START WAL LOCATION:") == true)
        let s = try BackupInfo(parsing: started)
        #expect(s.status == .started && s.endTime == nil && s.backupLabel == nil)
    }

    @Test func observedKeyListing() throws {
        guard let listing = Self.codeBlock(after: "### 6.1") else { print("SKIP: LAYOUT.md not found"); return }
        let layout = BarmanLayout(root: "n8n-prod")
        var kinds: [String: Int] = [:]
        for line in listing.split(separator: "\n") {
            let key = String(line.split(separator: "\t").last!)
            let o = try #require(layout.parse(key), "unrecognised observed key \(key)")
            #expect(layout.key(for: o) == key)
            kinds["\(o)".prefix { $0 != "(" }.description, default: 0] += 1
        }
        #expect(kinds["partialSegment"] == 1 && kinds["timelineHistory"] == 2 && (kinds["backupHistory"] ?? 0) >= 3)
    }
}

struct VeleroLayoutTests {
    let layout = VeleroLayout(root: "velero")

    @Test func recognisesVelerosFiles() {
        let cases: [(String, VeleroObject?)] = [
            ("velero/backups/cluster-daily-20261127020000/velero-backup.json", .backupMetadata(backup: "cluster-daily-20261127020000")),
            ("velero/backups/b1/b1.tar.gz", .backupContents(backup: "b1")),
            ("velero/backups/b1/b1-resource-list.json.gz", .backupSideFile(backup: "b1", suffix: "resource-list.json.gz")),
            ("velero/backups/b1/b1-results.gz", .backupSideFile(backup: "b1", suffix: "results.gz")),
            ("velero/backups/b1/b1-csi-volumesnapshots.json.gz", .backupSideFile(backup: "b1", suffix: "csi-volumesnapshots.json.gz")),
            ("velero/restores/r1/restore-r1-logs.gz", .restoreFile(restore: "r1", file: "restore-r1-logs.gz")),
            ("velero/kopia/n8n-prod/kopia.repository", .other(area: "kopia")),
            ("velero/metadata/revision", .other(area: "metadata")),
            ("velero/backups/b1/b2.tar.gz", nil),
            ("velero/backups/b1/b1-unknown.gz", nil),
            ("velero/cnpg/x", nil),
            ("other/backups/b1/velero-backup.json", nil),
        ]
        for (key, expected) in cases { #expect(layout.parse(key) == expected, "\(key)") }
        #expect(layout.metadataKey(backup: "b1") == "velero/backups/b1/velero-backup.json")
        #expect(layout.contentsKey(backup: "b1") == "velero/backups/b1/b1.tar.gz")
    }

    @Test func backupObjects() throws {
        let json = """
            {"apiVersion":"velero.io/v1","kind":"Backup","metadata":{"name":"n8n-prod-daily-20261127023000","namespace":"velero",
             "labels":{"velero.io/schedule-name":"n8n-prod-daily","drctl.dev/policy":"n8n-prod"}},
             "spec":{"includedNamespaces":["n8n-prod"],"ttl":"168h0m0s","storageLocation":"ceph-rgw"},
             "status":{"phase":"Completed","startTimestamp":"2026-11-27T02:30:00Z","completionTimestamp":"2026-11-27T02:31:12Z",
              "expiration":"2026-12-04T02:30:00Z","formatVersion":"1.1.0","version":1,"progress":{"totalItems":42,"itemsBackedUp":42},
              "someNewField":{"x":1}}}
            """
        let b = try VeleroBackup.decode(Data(json.utf8))
        #expect(b.phase == "Completed" && b.isTerminal)
        #expect(b.schedule == "n8n-prod-daily")
        #expect(b.status?.completionTimestamp == Date(timeIntervalSince1970: 1_795_746_672))
        #expect(b.covers(namespace: "n8n-prod") && !b.covers(namespace: "keycloak"))
        let inProgress = try VeleroBackup.decode(Data(#"{"metadata":{"name":"x"},"status":{"phase":"WaitingForPluginOperations"}}"#.utf8))
        #expect(!inProgress.isTerminal)
        let all = try VeleroBackup.decode(Data(#"{"metadata":{"name":"x"},"spec":{"includedNamespaces":["*"],"excludedNamespaces":["kube-system"]}}"#.utf8))
        #expect(all.covers(namespace: "keycloak") && !all.covers(namespace: "kube-system") && all.phase == "New")
        #expect(throws: (any Error).self) { try VeleroBackup.decode(Data(#"{"status":{}}"#.utf8)) }
        // A long fraction trapped ICU's parser (found by drctl-fuzz velero-backup): now read, or refused.
        let long = try VeleroBackup.decode(Data(#"{"metadata":{"name":"x"},"status":{"completionTimestamp":"2026-11-27T02:31:12.999999999999999999999Z"}}"#.utf8))
        #expect(long.status?.completionTimestamp == Date(timeIntervalSince1970: 1_795_746_672.999999))
        #expect(throws: (any Error).self) {
            try VeleroBackup.decode(Data(#"{"metadata":{"name":"x"},"status":{"completionTimestamp":"2026-1-27T02:31:12.99999999999999999999Z"}}"#.utf8))
        }
    }
}

import Foundation
import Support
import Storage
import Layout
import Records

/// The record of one restore drill: what was restored, to which point, how long it took, and
/// what the checks found. Written to the catalog and, as JSON, to drctl's prefix in the bucket
/// (`<drctl prefix>/evidence/<workload>/<id>.json`), where it outlives any cluster.
public struct DrillEvidence: Sendable, Codable, Equatable {
    public struct Database: Sendable, Codable, Equatable {
        public var cluster: String
        public var server: String
        public var backupID: String
        /// The requested target (`latest` or PostgreSQL's form of the time).
        public var target: String
        /// The newest transaction recovery replayed (pg_last_xact_replay_timestamp()).
        public var achieved: Date?
        public var stop: String
        public var timeline: UInt32?
        public var walSegments: Int
        public var baseBytes: Int64
        public var walBytes: Int64
        /// Settings of the backup's own postgresql.auto.conf that the drill's server did not read
        /// (names only: values may hold passwords).
        public var setAside: [String]?
        /// What the restore read, bound to its bytes (host drills): what retention trusts.
        public var proof: RestoreProof?
        /// The heartbeat rows the restore brought back (a policy with `heartbeat:`).
        public var heartbeat: Heartbeat?
        /// The WAL segment size of the restored backup (what the WAL replayed is measured in).
        public var walSegmentSize: UInt64?
        /// The settings replay ran with beyond drctl's safety settings (fsync off in a drill, shared buffers, …).
        public var replaySettings: [String: String]?
        public init(cluster: String, server: String, backupID: String, target: String, achieved: Date?, stop: String,
                    timeline: UInt32?, walSegments: Int, baseBytes: Int64, walBytes: Int64, setAside: [String]? = nil) {
            self.cluster = cluster; self.server = server; self.backupID = backupID; self.target = target; self.achieved = achieved
            self.stop = stop; self.timeline = timeline; self.walSegments = walSegments; self.baseBytes = baseBytes; self.walBytes = walBytes
            self.setAside = setAside
        }
    }

    /// What a restore held of production's heartbeat table: the newest row is when the restored
    /// data was last written (the RPO measured in the data), a gap in seq a committed transaction
    /// that did not come back.
    public struct Heartbeat: Sendable, Codable, Equatable {
        public var database: String
        public var rows: Int64
        public var firstSeq: Int64?
        public var newestSeq: Int64?
        public var newestAt: Date?
        public var newestLSN: String?
        /// Missing seq ranges below the newest row, `[from, to]` (at most 20).
        public var gaps: [[Int64]]
        public init(database: String, rows: Int64, firstSeq: Int64?, newestSeq: Int64?, newestAt: Date?, newestLSN: String?, gaps: [[Int64]]) {
            self.database = database; self.rows = rows; self.firstSeq = firstSeq; self.newestSeq = newestSeq; self.newestAt = newestAt
            self.newestLSN = newestLSN; self.gaps = gaps
        }
    }

    public struct Check: Sendable, Codable, Equatable {
        public enum Result: String, Sendable, Codable { case passed, failed, skipped }
        public var name: String
        public var result: Result
        public var detail: String
        public var seconds: Double
        public init(name: String, result: Result, detail: String, seconds: Double) {
            self.name = name; self.result = result; self.detail = detail; self.seconds = seconds
        }
    }

    public enum Result: String, Sendable, Codable { case passed, failed }

    public var id: String
    public var workload: String
    public var mode: String
    public var host: String
    public var startedAt: Date
    public var finishedAt: Date
    /// `latest` or the requested time.
    public var target: String
    public var targetTime: Date?
    public var result: Result
    /// Why the drill failed, in one line.
    public var error: String?
    public var databases: [Database]
    public var checks: [Check]
    /// Wall time from the drill's start until the data was verified: the measured RTO.
    public var rtoSeconds: Double
    public var rtoObjectiveSeconds: Int
    /// Data lost relative to the target: target (or drill start for `latest`) minus the
    /// oldest achieved point among the databases (a database's newest heartbeat when it has one).
    public var rpoSeconds: Double?
    public var rpoObjectiveSeconds: Int
    /// Seconds per phase: plan, download_unpack, wal_replay, checks (summed over databases).
    public var phases: [String: Double]
    public var bytesFetched: Int64
    /// How a cluster drill was kept from production (namespaces it restored into, what it left
    /// out, network and Pod Security seal, modifiers), one line each.
    public var sealed: [String]?
    /// The RTO predicted at the drill's start from earlier drills' rates and this restore's plan
    /// (host drills with a measured history): what the report holds against the measured RTO.
    public var predictedRTO: RTOModel.Prediction?
    /// Set when the drill restored from a copy of the bucket (`drctl verify --source`), not from
    /// the policy's store: what it proves is that the copy restores.
    public var source: String?

    public init(id: String, workload: String, mode: String, host: String, startedAt: Date, finishedAt: Date, target: String,
                targetTime: Date?, result: Result, error: String?, databases: [Database], checks: [Check], rtoSeconds: Double,
                rtoObjectiveSeconds: Int, rpoSeconds: Double?, rpoObjectiveSeconds: Int, phases: [String: Double], bytesFetched: Int64) {
        self.id = id; self.workload = workload; self.mode = mode; self.host = host; self.startedAt = startedAt; self.finishedAt = finishedAt
        self.target = target; self.targetTime = targetTime; self.result = result; self.error = error; self.databases = databases
        self.checks = checks; self.rtoSeconds = rtoSeconds; self.rtoObjectiveSeconds = rtoObjectiveSeconds; self.rpoSeconds = rpoSeconds
        self.rpoObjectiveSeconds = rpoObjectiveSeconds; self.phases = phases; self.bytesFetched = bytesFetched
    }

    /// Where drills of a workload are kept in the bucket, under drctl's prefix.
    public static func prefix(drctlPrefix: String, workload: String) -> String {
        DrctlLayout(root: drctlPrefix).evidencePrefix(workload: workload)
    }

    public static func key(drctlPrefix: String, workload: String, id: String) -> String {
        DrctlLayout(root: drctlPrefix).evidenceKey(workload: workload, id: id)
    }

    public static var encoder: JSONEncoder { JSONCoding.encoder() }
    public static var decoder: JSONDecoder { JSONCoding.decoder() }

    /// The data lost relative to `reference`: from the oldest of the databases' restored points,
    /// each its newest heartbeat where it has one (measured in the data), never later than its
    /// newest replayed commit (a heartbeat is a commit: one that claims to be later is not believed).
    public static func rpo(_ databases: [Database], reference: Date) -> Double? {
        databases.compactMap { d in [d.heartbeat?.newestAt, d.achieved].compactMap { $0 }.min() }.min().map { max(0, reference.timeIntervalSince($0)) }
    }

    /// The evidence as stored: sealed under drctl's record key (see RecordSeal), bound to its key
    /// below drctl's prefix.
    public static func sealed(_ e: DrillEvidence, drctlPrefix: String, keys: RecordKeyring = .current) throws -> (key: String, bytes: [UInt8]) {
        let key = self.key(drctlPrefix: drctlPrefix, workload: e.workload, id: e.id)
        return (key, try RecordSeal.seal(e, kind: RecordKind.evidence, name: DrctlLayout(root: drctlPrefix).recordName(key), keys: keys))
    }

    /// A workload's drills in the bucket, newest first, at most `limit` (ids begin with their
    /// UTC start, so key order is time order). Only evidence drctl sealed counts: an object that
    /// does not decode is named in `undecodable`, one that decodes but does not verify (unsigned,
    /// another key, changed, moved from another workload) in `unauthenticated`; neither hides
    /// the other drills, and neither is ever taken for a drill.
    public static func all(_ reader: any StorageReader, drctlPrefix: String, workload: String, limit: Int = 100,
                           keys: RecordKeyring = .current) throws -> (drills: [DrillEvidence], undecodable: [String], unauthenticated: [String]) {
        var names: [String] = []
        try reader.list(prefix: prefix(drctlPrefix: drctlPrefix, workload: workload), delimiter: nil, startAfter: nil) { objects, _ in
            names += objects.map(\.key).filter { $0.hasSuffix(".json") }
        }
        let layout = DrctlLayout(root: drctlPrefix)
        var drills: [DrillEvidence] = [], bad: [String] = [], forged: [String] = []
        // Newest first until `limit` authentic drills: objects that are not drctl's take no place
        // among them (within a bound on what is read), and one that cannot be read is skipped.
        for key in names.sorted(by: >).prefix(limit + 1000) where drills.count < limit {
            guard let bytes = try? reader.read(key, limit: 4 << 20) else { bad.append(key); continue }
            let (d, authenticity) = RecordSeal.open(bytes, as: DrillEvidence.self, kind: RecordKind.evidence,
                                                    name: layout.recordName(key), keys: keys)
            guard let d else { bad.append(key); continue }
            if authenticity.isAuthentic && d.workload == workload { drills.append(d) } else { forged.append(key) }
        }
        return (drills, bad, forged)
    }

    /// A workload's recent drills: the authentic ones in the store and those a catalog recorded
    /// that it does not hold (not synced, or --no-upload), each once, newest first; and the keys
    /// of the store's evidence that does not verify.
    public static func recent(_ reader: any StorageReader, drctlPrefix: String, workload: String, catalog: CatalogStore?,
                              limit: Int = 10) throws -> (drills: [DrillEvidence], unauthenticated: [String]) {
        let inStore = try all(reader, drctlPrefix: drctlPrefix, workload: workload, limit: limit)
        var drills = inStore.drills
        for d in try catalog?.drills(workload: workload, limit: limit) ?? [] where !drills.contains(where: { $0.id == d.id }) { drills.append(d) }
        return (drills.sorted { $0.startedAt > $1.startedAt }, inStore.unauthenticated)
    }

    /// The newest authentic evidence (undecodable or unauthenticated objects are passed over).
    public static func newest(_ reader: any StorageReader, drctlPrefix: String, workload: String, keys: RecordKeyring = .current) throws -> DrillEvidence? {
        try all(reader, drctlPrefix: drctlPrefix, workload: workload, limit: 20, keys: keys).drills.first
    }

    /// Every workload's authentic drills under a drctl prefix (what retention reads proofs from),
    /// and the keys of those that do not verify.
    public static func everyWorkload(_ reader: any StorageReader, drctlPrefix: String, keys: RecordKeyring = .current) throws -> (drills: [DrillEvidence], unauthenticated: [String]) {
        let layout = DrctlLayout(root: drctlPrefix)
        var workloads = Set<String>()
        try reader.list(prefix: layout.evidencePrefix, delimiter: nil, startAfter: nil) { objects, _ in
            for o in objects {
                let rest = o.key.dropFirst(layout.evidencePrefix.count)
                if let slash = rest.firstIndex(of: "/") { workloads.insert(String(rest[..<slash])) }
            }
        }
        var drills: [DrillEvidence] = [], forged: [String] = []
        for w in workloads.sorted() {
            let found = try all(reader, drctlPrefix: drctlPrefix, workload: w, limit: 1000, keys: keys)
            drills += found.drills
            forged += found.unauthenticated + found.undecodable
        }
        return (drills, forged)
    }
}

import Foundation
import Layout
import Records
import Storage
import Support

/// The record of one site rehearsal (`drctl rehearse`): every workload brought back from a copy
/// alone, when each started and was healthy, and the site's RTO with the path that decided it.
/// Kept in the store the site came back from (`<drctl prefix>/rehearsals/<id>.json`, sealed) and
/// in the catalog.
public struct RehearsalEvidence: Sendable, Codable, Equatable {
    public struct Workload: Sendable, Codable, Equatable {
        public var workload: String
        public var result: DrillEvidence.Result
        public var error: String?
        /// The drill's id (its own evidence is beside, under evidence/<workload>/).
        public var drillID: String?
        /// Seconds from the rehearsal's start: when this workload's restore began, and when its
        /// data was verified (the site has it back).
        public var startedAfter: Double
        public var healthyAfter: Double
        public var rtoSeconds: Double
        public var rtoObjectiveSeconds: Int
        /// What the copy alone gives back: the target minus the newest restored point (the heartbeat's when there is one).
        public var rpoSeconds: Double?
        public var rpoObjectiveSeconds: Int
        public var phases: [String: Double]
        /// What it waited for before it could start: a workload it depends on, or the one whose end freed a slot.
        public var waitedFor: String?
        public var dependsOn: [String]
        public init(workload: String, result: DrillEvidence.Result, error: String?, drillID: String?, startedAfter: Double, healthyAfter: Double,
                    rtoSeconds: Double, rtoObjectiveSeconds: Int, rpoSeconds: Double?, rpoObjectiveSeconds: Int, phases: [String: Double],
                    waitedFor: String?, dependsOn: [String]) {
            self.workload = workload; self.result = result; self.error = error; self.drillID = drillID; self.startedAfter = startedAfter
            self.healthyAfter = healthyAfter; self.rtoSeconds = rtoSeconds; self.rtoObjectiveSeconds = rtoObjectiveSeconds
            self.rpoSeconds = rpoSeconds; self.rpoObjectiveSeconds = rpoObjectiveSeconds; self.phases = phases; self.waitedFor = waitedFor
            self.dependsOn = dependsOn
        }
    }

    public var id: String
    /// The ObjectStore the site came back from.
    public var from: String
    public var mode: String
    public var host: String
    public var startedAt: Date
    public var finishedAt: Date
    public var result: DrillEvidence.Result
    /// Start to the last workload healthy (every workload: a failed one counts when it gave up).
    public var siteRTOSeconds: Double
    /// The site's objective (kind: Rehearsal's rto, 1h by default) and the largest workload objective.
    public var siteRTOObjectiveSeconds: Int
    public var largestWorkloadRTOObjectiveSeconds: Int
    public var parallel: Int
    public var workloads: [Workload]
    /// The chain of workloads that decided the site RTO, first to last, and the longest phase of the last.
    public var criticalPath: [String]
    public var criticalPhase: String?

    public init(id: String, from: String, mode: String, host: String, startedAt: Date, finishedAt: Date, siteRTOObjectiveSeconds: Int,
                parallel: Int, workloads: [Workload]) {
        self.id = id; self.from = from; self.mode = mode; self.host = host; self.startedAt = startedAt; self.finishedAt = finishedAt
        self.siteRTOObjectiveSeconds = siteRTOObjectiveSeconds; self.parallel = parallel; self.workloads = workloads
        result = !workloads.isEmpty && workloads.allSatisfy { $0.result == .passed } ? .passed : .failed
        siteRTOSeconds = workloads.map(\.healthyAfter).max() ?? 0
        largestWorkloadRTOObjectiveSeconds = workloads.map(\.rtoObjectiveSeconds).max() ?? 0
        (criticalPath, criticalPhase) = Self.criticalPath(workloads)
    }

    /// Back from the workload healthy last, through what each waited for: the chain that made
    /// the site RTO what it is; its last workload's longest phase is where time would be won.
    static func criticalPath(_ ws: [Workload]) -> ([String], String?) {
        guard var w = ws.max(by: { ($0.healthyAfter, $1.workload) < ($1.healthyAfter, $0.workload) }) else { return ([], nil) }
        let phase = w.phases.max { ($0.value, $1.key) < ($1.value, $0.key) }?.key
        var path = [w.workload]
        while let prev = w.waitedFor, !path.contains(prev), let p = ws.first(where: { $0.workload == prev }) {
            path.insert(prev, at: 0)
            w = p
        }
        return (path, phase)
    }

    /// The rehearsals that speak for the site, newest first: from `from`, covering every one of
    /// `workloads`. One of some workloads (`drctl rehearse app`) or from another store does not.
    public static func wholeSite(_ rs: [RehearsalEvidence], from: String, workloads: [String]) -> [RehearsalEvidence] {
        let every = Set(workloads)
        return rs.filter { $0.from == from && every.isSubset(of: Set($0.workloads.map(\.workload))) }.sorted { $0.startedAt > $1.startedAt }
    }

    public var met: Bool { result == .passed && siteRTOSeconds <= Double(siteRTOObjectiveSeconds) }

    public static var encoder: JSONEncoder { JSONCoding.encoder() }
    public static var decoder: JSONDecoder { JSONCoding.decoder() }

    /// The rehearsal as stored: sealed under drctl's record key, bound to its key below drctl's prefix.
    public static func sealed(_ e: RehearsalEvidence, drctlPrefix: String, keys: RecordKeyring = .current) throws -> (key: String, bytes: [UInt8]) {
        let layout = DrctlLayout(root: drctlPrefix)
        let key = layout.rehearsalKey(id: e.id)
        return (key, try RecordSeal.seal(e, kind: RecordKind.rehearsal, name: layout.recordName(key), keys: keys))
    }

    /// The rehearsals in a store, newest first, at most `limit`: only those drctl sealed; the keys
    /// of objects that do not verify in `unauthenticated`.
    public static func all(_ reader: any StorageReader, drctlPrefix: String, limit: Int = 50,
                           keys: RecordKeyring = .current) throws -> (rehearsals: [RehearsalEvidence], unauthenticated: [String]) {
        let layout = DrctlLayout(root: drctlPrefix)
        var names: [String] = []
        try reader.list(prefix: layout.rehearsalPrefix, delimiter: nil, startAfter: nil) { objects, _ in
            names += objects.map(\.key).filter { $0.hasSuffix(".json") }
        }
        var out: [RehearsalEvidence] = [], bad: [String] = []
        for key in names.sorted(by: >).prefix(limit + 1000) where out.count < limit {
            guard let bytes = try? reader.read(key, limit: 4 << 20) else { bad.append(key); continue }
            let (r, authenticity) = RecordSeal.open(bytes, as: RehearsalEvidence.self, kind: RecordKind.rehearsal, name: layout.recordName(key), keys: keys)
            if let r, authenticity.isAuthentic, layout.rehearsalKey(id: r.id) == key { out.append(r) } else { bad.append(key) }
        }
        return (out, bad)
    }
}

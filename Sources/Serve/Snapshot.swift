import AlertPath
import Catalog
import Foundation

/// Everything `drctl serve` shows, computed after each catalog sync and drill: the metrics,
/// the JSON API and the status page are renderings of one snapshot, so a scrape never touches
/// the bucket or the catalog.
public struct Snapshot: Sendable, Codable {
    public var generatedAt: Date
    public var workloads: [Workload]
    public var stores: [Store]
    /// The newest drills first, across workloads.
    public var drills: [DrillEvidence]
    /// Evidence objects in the bucket that did not decode (skipped, not shown).
    public var undecodableEvidence = 0
    /// Drill evidence objects that decode but are not sealed with drctl's record key: never taken for a drill.
    public var unauthenticatedEvidence = 0
    /// The last `alerts check` of the alert path (nil: none yet, or no Alerting policy).
    public var alerts: AlertPathReport?
    /// This replica, and who leads (replicated serve only).
    public var replica: String?
    public var leader: String?
    /// The site rehearsal (kind: Rehearsal): its policy's objective, the newest run and the newest that passed.
    public var rehearsal: Rehearsal?
    /// Each heartbeat writer: its last row written and its last error.
    public var heartbeats: [Heartbeat] = []

    public struct Rehearsal: Sendable, Codable {
        public var from: String
        public var objectiveSeconds: Int
        public var newest: RehearsalEvidence?
        public var newestPassed: RehearsalEvidence?
        /// Records under the rehearsals prefix that are not drctl's (ignored).
        public var unauthenticated = 0
        public init(from: String, objectiveSeconds: Int, newest: RehearsalEvidence?, newestPassed: RehearsalEvidence?) {
            self.from = from; self.objectiveSeconds = objectiveSeconds; self.newest = newest; self.newestPassed = newestPassed
        }
    }

    public struct Heartbeat: Sendable, Codable {
        public var workload: String
        public var cluster: String
        public var lastSuccess: Date?
        public var error: String?
        public init(workload: String, cluster: String, lastSuccess: Date?, error: String?) {
            self.workload = workload; self.cluster = cluster; self.lastSuccess = lastSuccess; self.error = error
        }
    }

    public init(generatedAt: Date, workloads: [Workload], stores: [Store], drills: [DrillEvidence]) {
        self.generatedAt = generatedAt
        self.workloads = workloads
        self.stores = stores
        self.drills = drills
    }

    public struct Workload: Sendable, Codable {
        public var status: WorkloadStatus
        public var rtoObjectiveSeconds: Int
        public var store: String
        public var timeline: Timeline
        /// Alert name -> runbook URL, for the alerts that concern this workload.
        public var runbooks: [String: String]

        public init(status: WorkloadStatus, rtoObjectiveSeconds: Int, store: String, timeline: Timeline, runbooks: [String: String]) {
            self.status = status
            self.rtoObjectiveSeconds = rtoObjectiveSeconds
            self.store = store
            self.timeline = timeline
            self.runbooks = runbooks
        }
    }

    /// What the status page draws for a workload over the last days.
    public struct Timeline: Sendable, Codable {
        public struct Point: Sendable, Codable {
            /// `velero` or `cnpg`.
            public var kind: String
            /// The Velero tier, or the CNPG cluster.
            public var source: String
            public var id: String
            public var at: Date
            /// Whether it can be restored (a completed Velero backup, a DONE base backup with its WAL).
            public var restorable: Bool
            public init(kind: String, source: String, id: String, at: Date, restorable: Bool) {
                self.kind = kind; self.source = source; self.id = id; self.at = at; self.restorable = restorable
            }
        }
        /// A stretch of archived WAL without a missing segment, or a gap (`missing` names the first segment lost).
        public struct Span: Sendable, Codable {
            public var cluster: String
            public var from: Date
            public var to: Date
            public var missing: String?
            public init(cluster: String, from: Date, to: Date, missing: String? = nil) {
                self.cluster = cluster; self.from = from; self.to = to; self.missing = missing
            }
        }
        public var points: [Point]
        public var wal: [Span]
        public init(points: [Point], wal: [Span]) {
            self.points = points
            self.wal = wal
        }
    }

    /// An object store as the service last saw it.
    public struct Store: Sendable, Codable {
        public var name: String
        /// Whether the last request to it succeeded (nil: not tried yet).
        public var up: Bool?
        public var lastSyncSuccess: Date?
        public var lastSyncSeconds: Double?
        public var syncErrors: Int
        public var objectsIndexed: Int
        public var lastError: String?
        /// Alert name -> runbook URL, for the alerts about a store.
        public var runbooks: [String: String]
        public init(name: String, up: Bool? = nil, lastSyncSuccess: Date? = nil, lastSyncSeconds: Double? = nil, syncErrors: Int = 0,
                    objectsIndexed: Int = 0, lastError: String? = nil, runbooks: [String: String] = [:]) {
            self.name = name; self.up = up; self.lastSyncSuccess = lastSyncSuccess; self.lastSyncSeconds = lastSyncSeconds
            self.syncErrors = syncErrors; self.objectsIndexed = objectsIndexed; self.lastError = lastError; self.runbooks = runbooks
        }
    }
}

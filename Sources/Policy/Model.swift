import Support
/// Everything read from a set of policy files.
public struct PolicySet: Sendable {
    public var objectStores: [ObjectStorePolicy] = []
    public var backupPolicies: [BackupPolicy] = []
    /// Where drctl's alerts go (at most one `kind: Alerting`).
    public var alerting: AlertingPolicy?
    /// The whole-site rehearsal (at most one `kind: Rehearsal`).
    public var rehearsal: RehearsalPolicy?
    public init() {}

    public func objectStore(named name: String) -> ObjectStorePolicy? { objectStores.first { $0.name.value == name } }
}

public struct SecretKeyRef: Sendable, Equatable {
    public var name: String
    public var key: String
}

/// `kind: ObjectStore` — where backups live and how to reach it.
public struct ObjectStorePolicy: Sendable {
    public var name: Located<String>
    public var endpoint: Located<String>
    public var bucket: Located<String>
    public var region: String
    public var pathStyle: Bool
    public var ca: SecretKeyRef?
    public var credentials: Credentials
    public var objectLock: ObjectLock?
    public var prefixes: Prefixes
    /// Other stores this one's backups are copied to (3-2-1: another Ceph, site or disk).
    public var copies: [Copy] = []

    public struct Credentials: Sendable {
        /// A Secret present in every namespace that needs it (velero, each database's, drctl's).
        public var secretName: String
        public var accessKeyIdKey: String
        public var secretAccessKeyKey: String
        /// Key holding an AWS credentials *file*, which Velero's AWS plugin reads.
        public var veleroKey: String
    }

    public struct ObjectLock: Sendable {
        public var mode: String
        public var retention: TimeSpan
    }

    public struct Prefixes: Sendable {
        public var velero: Located<String>
        public var barman: Located<String>
        public var drctl: Located<String>
    }

    /// One copy of this store: what goes to which other ObjectStore, and how far behind it may fall.
    public struct Copy: Sendable {
        /// The kinds of objects a copy takes, each from this store's prefix to the target's.
        public enum Kind: String, Sendable, CaseIterable { case barman, velero, drctl }
        public var to: Located<String>
        public var kinds: [Kind]
        /// How old the oldest object not yet on the copy may get before the workload is AT RISK.
        public var maxLag: Located<TimeSpan>?
        /// age recipients (`age1…`) the copy is encrypted to before it leaves; empty: plain.
        public var recipients: [String] = []
        /// The copy's own retention (`drctl prune --store <copy>`); nil: the source's.
        public var retention: BackupPolicy.Retention? = nil
        /// `objectLock: required`: copy nothing into a bucket without Object Lock.
        public var requireObjectLock = false
        public var location: SourceLocation
    }

    /// The key prefix of one kind of object in this store.
    public func prefix(_ kind: Copy.Kind) -> String {
        switch kind {
        case .barman: return prefixes.barman.value
        case .velero: return prefixes.velero.value
        case .drctl: return prefixes.drctl.value
        }
    }

    /// barman-cloud's destinationPath for this store.
    public var barmanDestination: String { "s3://\(bucket.value)/\(prefixes.barman.value)" }
}

/// `kind: BackupPolicy` — one workload: what to back up, how often, how long, and what
/// recovery it must be able to prove.
public struct BackupPolicy: Sendable {
    public var name: Located<String>
    public var location: SourceLocation
    public var objectStore: Located<String>
    public var namespaces: [Located<String>]
    public var includeClusterResources: Bool
    public var rpo: Located<TimeSpan>
    public var rto: Located<TimeSpan>
    public var velero: Velero?
    public var cnpg: [CNPGCluster]
    public var drill: Drill?
    /// Whether the file has a velero or cnpg section at all (even one that failed to load).
    public var declaresBackups: Bool
    /// Workloads that must be back before this one starts restoring (a site rehearsal's order).
    public var dependsOn: [Located<String>] = []

    public struct Velero: Sendable {
        public enum Volumes: String, Sendable { case snapshot, fileSystem, none }
        public var location: SourceLocation
        public var volumes: Volumes
        public var schedules: [Schedule]
        /// Entries written under `schedules`, loaded or not.
        public var declaredSchedules: Int
        public var hooks: [Hook]
        public var excludedResources: [String]
        /// Whether Velero copies the files of CNPG's database volumes too (`include`), or only
        /// their PVC objects (`skip`, the default): barman already holds that data, consistent,
        /// and a file copy of a running database directory is not.
        public var databaseVolumes: DatabaseVolumes = .skip
        public enum DatabaseVolumes: String, Sendable { case skip, include }
    }

    /// One tier of a grandfather-father-son set.
    public struct Schedule: Sendable {
        public var tier: Located<String>
        public var cron: Located<Cron>
        public var retention: Located<TimeSpan>
    }

    public struct Hook: Sendable {
        public var name: String
        public var when: String          // pre | post
        public var container: String
        public var command: [String]
        public var onError: String       // Continue | Fail
        public var timeout: TimeSpan
        public var labelSelector: [String: String]
    }

    public struct CNPGCluster: Sendable {
        public enum Method: String, Sendable { case barmanObjectStore, plugin }
        public var cluster: Located<String>
        public var namespace: String
        public var serverName: Located<String>
        public var method: Method
        public var schedule: Located<Cron>
        public var target: String
        public var walEnabled: Bool
        public var walCompression: String?
        public var walMaxParallel: Int
        public var archiveTimeout: Located<TimeSpan>?
        public var dataCompression: String?
        public var dataJobs: Int
        /// The recovery window (CNPG's retentionPolicy unless tiers are set).
        public var retention: Located<TimeSpan>
        /// Base backups kept beyond the window, each with only its own WAL (drctl prune).
        public var tiers: RetentionTiers = .none
        /// Rows drctl serve writes into production, read back from every restore of it.
        public var heartbeat: Heartbeat? = nil
    }

    /// `cnpg[].heartbeat`: drctl serve inserts a row into `drctl_heartbeat` of `database` every
    /// `every`, as a role that may only insert there; a restore's newest row is the RPO measured
    /// in the data, and a gap in `seq` below it a committed transaction that did not come back.
    public struct Heartbeat: Sendable {
        public var every: Located<TimeSpan>
        public var database: String
        /// A basic-auth Secret (username, password) of the heartbeat role, as CNPG's managed roles read it.
        public var secretName: String
        /// Where the database answers (default: the cluster's `<cluster>-rw.<namespace>.svc`).
        public var host: String?
        public var port: Int
        public var location: SourceLocation
        public init(every: Located<TimeSpan>, database: String, secretName: String, host: String?, port: Int, location: SourceLocation) {
            self.every = every; self.database = database; self.secretName = secretName; self.host = host; self.port = port; self.location = location
        }
    }

    /// A recovery window and the long-term tiers kept beyond it.
    public struct Retention: Sendable {
        public var window: Located<TimeSpan>
        public var tiers: RetentionTiers
    }

    public struct Drill: Sendable {
        public var schedule: Located<Cron>
        public var checks: [Check]
        /// Velero resource-modifier rules applied to what a drill restores, after drctl's own
        /// (CronJobs suspended): scale a Deployment to 0, drop an env var, ….
        public var modifiers: [Modifier] = []
        /// Libraries a restored server may preload (`shared_preload_libraries`), by name: a drill
        /// loads nothing the backup asks for, so checks that need an extension's library (e.g.
        /// pg_stat_statements, timescaledb) name it here, reviewed with the policy.
        public var preloadLibraries: [String] = []
        /// The ObjectStore drills restore from: a copy of the workload's store (spec.copies[].to),
        /// so the drill proves the copy; nil: the workload's own store.
        public var from: Located<String>? = nil
    }

    /// One Velero resource-modifier rule (velero.io/docs/v1.19/restore-resource-modifiers), JSON
    /// patches only.
    public struct Modifier: Sendable {
        public struct Patch: Sendable {
            public var operation: String
            public var path: String
            public var value: String?
            public var from: String?
        }
        public var groupResource: String
        public var resourceNameRegex: String?
        public var matchLabels: [String: String]
        public var patches: [Patch]

        public static let operations = ["add", "remove", "replace", "copy", "move", "test"]

        /// The rule as Velero reads it.
        public var rule: [String: any Sendable] {
            var conditions: [String: any Sendable] = ["groupResource": groupResource]
            if let resourceNameRegex { conditions["resourceNameRegex"] = resourceNameRegex }
            if !matchLabels.isEmpty { conditions["labelSelector"] = ["matchLabels": matchLabels] }
            return ["conditions": conditions, "patches": patches.map { p -> [String: any Sendable] in
                var d: [String: any Sendable] = ["operation": p.operation, "path": p.path]
                if let v = p.value { d["value"] = v }
                if let f = p.from { d["from"] = f }
                return d
            }]
        }
    }

    public enum Check: Sendable {
        case sql(cluster: String, database: String, query: String, expect: String)
        case freshness(cluster: String, database: String, table: String, column: String)
        case podsReady
        case resourceCount(kind: String, min: Int)
    }
}

/// Library names a policy may allow a restored server to preload.
public enum LibraryName {
    /// Letters, digits and `_`: a name PostgreSQL looks up in `$libdir`, never a path (a `/` would
    /// load any file on the host) or a list.
    public static func isValid(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 63 && name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }
    }
}

/// PostgreSQL database names as drill checks may name them.
public enum DatabaseName {
    /// Letters, digits, `_`, `$`, `.` and `-`, at most 63 bytes (NAMEDATALEN - 1): nothing a
    /// connection string or URI could be made of.
    public static func isValid(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 63, name.first != "-" else { return false }
        return name.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || "_$.-".unicodeScalars.contains($0) }
    }
}

/// `kind: Rehearsal` — the whole site brought back from a copy, on a schedule (drctl rehearse,
/// drctl serve): every workload restored from `from` alone, the site's RTO measured against `rto`.
public struct RehearsalPolicy: Sendable {
    public var name: Located<String>
    /// The ObjectStore the site comes back from: a copy of the workloads' stores.
    public var from: Located<String>
    public var schedule: Located<Cron>
    /// The site's objective: the last workload healthy within it (default 1h).
    public var rto: Located<TimeSpan>
    /// Workloads restored at once.
    public var parallel: Int
    /// host or cluster; nil: the command's (drctl serve's --mode, drctl rehearse's host).
    public var mode: String?
}

/// `kind: Alerting` — the receivers drctl's alerts go to through Alertmanager, and how the
/// path to them is checked (`drctl alerts check`): a backup alert nobody receives is no alert.
public struct AlertingPolicy: Sendable {
    public var name: Located<String>
    /// Alertmanager's base URL (its v2 API and /metrics), e.g. http://alertmanager-operated.monitoring:9093.
    public var alertmanager: Located<String>?
    /// The status page linked from every notification.
    public var statusPage: String?
    /// When `drctl serve` checks the path (cron).
    public var checkSchedule: Located<Cron>?
    public var receivers: [Receiver]

    public struct Receiver: Sendable {
        public enum Target: Sendable, Equatable {
            /// A Slack incoming webhook: its URL is a secret.
            case slack(channel: String, apiURL: SecretKeyRef)
            /// A webhook (a heartbeat service, a pager's endpoint): the URL itself, or a Secret holding it.
            case webhook(url: String?, urlSecret: SecretKeyRef?)
        }
        public var name: Located<String>
        public var target: Target
        /// Receives DrctlWatchdog, the alert that always fires, and nothing else: a dead man's
        /// switch that pages when the watchdog stops arriving.
        public var watchdog: Bool
        /// A URL drctl can GET to read back what the receiver got (a heartbeat service's log of
        /// pings, a sink): the check then also waits for its test alert's id to appear there.
        public var readBack: String?
        /// Alertmanager's name of the integration (the `integration` label of its metrics).
        public var integration: String {
            switch target { case .slack: return "slack"; case .webhook: return "webhook" }
        }
    }
}

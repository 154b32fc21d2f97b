import Foundation
import GRDB
import Layout
import Support
import Storage
import Paths

/// drctl's SQLite index of the bucket. It holds the last listing of each synced prefix and the
/// bodies of the small metadata objects the scanners read; never the only copy of anything:
/// delete it and `drctl catalog rebuild` makes it again from the bucket.
public final class CatalogStore: @unchecked Sendable {
    public let path: String
    let db: DatabasePool

    public init(path: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: Paths.parent(path), withIntermediateDirectories: true)
        var config = Configuration()
        config.busyMode = .timeout(30)
        db = try DatabasePool(path: path, configuration: config)   // WAL mode
        try Self.migrator.migrate(db)
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE objects (
                  store TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL, last_modified REAL,
                  PRIMARY KEY (store, key)) WITHOUT ROWID;
                CREATE TABLE metadata (
                  store TEXT NOT NULL, key TEXT NOT NULL, etag TEXT NOT NULL, body BLOB NOT NULL, fetched_at REAL NOT NULL,
                  PRIMARY KEY (store, key)) WITHOUT ROWID;
                CREATE TABLE sync_runs (
                  id INTEGER PRIMARY KEY AUTOINCREMENT, store TEXT NOT NULL, prefix TEXT NOT NULL, started_at REAL NOT NULL,
                  finished_at REAL, objects INTEGER, fetched INTEGER, error TEXT);
                CREATE TABLE rpo_history (
                  workload TEXT NOT NULL, measured_at REAL NOT NULL, rpo_seconds INTEGER, objective_seconds INTEGER NOT NULL,
                  status TEXT NOT NULL, evidence TEXT);
                """)
        }
        m.registerMigration("v2") { db in
            try db.execute(sql: "ALTER TABLE sync_runs ADD COLUMN full INTEGER NOT NULL DEFAULT 1")
        }
        m.registerMigration("v3") { db in
            try db.execute(sql: """
                CREATE TABLE drills (
                  id TEXT PRIMARY KEY, workload TEXT NOT NULL, started_at REAL NOT NULL, result TEXT NOT NULL,
                  rto_seconds REAL NOT NULL, evidence BLOB NOT NULL);
                CREATE INDEX drills_by_workload ON drills (workload, started_at);
                """)
        }
        m.registerMigration("v4") { db in
            // Why a measurement was not PROTECTED: what drctl report names as a breach's cause.
            try db.execute(sql: """
                ALTER TABLE rpo_history ADD COLUMN reasons TEXT;
                CREATE INDEX rpo_history_by_time ON rpo_history (measured_at);
                """)
        }
        m.registerMigration("v5") { db in
            try db.execute(sql: """
                CREATE TABLE rehearsals (
                  id TEXT PRIMARY KEY, started_at REAL NOT NULL, result TEXT NOT NULL, site_rto_seconds REAL NOT NULL, evidence BLOB NOT NULL);
                """)
        }
        return m
    }

    /// The metadata objects worth keeping a copy of: small, and all the scanners read.
    public static func isMetadata(_ key: String) -> Bool {
        let name = key.split(separator: "/").last.map(String.init) ?? key
        return name == "backup.info" || name == "velero-backup.json" || name.hasSuffix(".history") || name.contains(".history.")
            || ((key.hasPrefix("evidence/") || key.contains("/evidence/")) && name.hasSuffix(".json"))
    }

    /// What a synced prefix holds, which decides how much of it must be listed again.
    public enum PrefixKind: String, Sendable, Codable {
        /// barman-cloud destination: base/ and the newest WAL directories change; older WAL
        /// directories are append-only and are re-listed only by a full sync.
        case barman
        /// Anything else (Velero's prefix): listed in full every time.
        case generic
    }

    /// How old the last full listing of a barman prefix may be before a sync lists everything again.
    public static let fullListingInterval: TimeInterval = 24 * 3600

    public struct SyncResult: Sendable, Codable {
        public var store: String
        public var prefix: String
        /// Whether every key was listed (false: sealed WAL directories were taken from the catalog).
        public var full: Bool
        public var listed: Int
        public var objects: Int
        public var fetched: Int
        public var removed: Int
        public var seconds: Double
    }

    /// Brings the catalog's copy of `prefix` in line with the bucket: one listing, then GETs
    /// only for metadata objects that are new or whose ETag changed. Every step is its own
    /// transaction, so an interrupted sync leaves a consistent catalog that the next run completes.
    public func sync(store: String, prefix: String, kind: PrefixKind = .generic, forceFull: Bool = false,
                     from storage: any StorageReader, progress: ((String) -> Void)? = nil) throws -> SyncResult {
        let started = Date()
        let upper = prefix + "\u{10FFFF}"
        let lastFull = try db.read { db in
            try Double.fetchOne(db, sql: "SELECT MAX(finished_at) FROM sync_runs WHERE store = ? AND prefix = ? AND error IS NULL AND full = 1",
                                arguments: [store, prefix])
        }
        let full = forceFull || kind == .generic || lastFull.map { started.timeIntervalSince1970 - $0 > Self.fullListingInterval } ?? true
        let runID = try db.write { db -> Int64 in
            try db.execute(sql: "INSERT INTO sync_runs (store, prefix, started_at, full) VALUES (?, ?, ?, ?)",
                           arguments: [store, prefix, started.timeIntervalSince1970, full])
            return db.lastInsertedRowID
        }
        do {
            let listing = full ? try fullListing(prefix: prefix, storage: storage)
                               : try incrementalListing(store: store, prefix: prefix, storage: storage)
            let listed = listing.ranges.flatMap(\.objects)
            progress?("listed \(listed.count) objects under \(storage.location)/\(prefix)\(full ? "" : " (WAL directories sealed since the last full listing taken from the catalog)")")
            // Replace exactly the listed ranges, in one transaction: readers see the old or the new state.
            try db.write { db in
                let insert = try db.makeStatement(sql: "INSERT INTO objects (store, key, size, etag, last_modified) VALUES (?, ?, ?, ?, ?)")
                for r in listing.ranges {
                    if r.shallow {
                        // Only the keys directly under the prefix; deeper ones belong to other ranges.
                        try db.execute(sql: "DELETE FROM objects WHERE store = ? AND key >= ? AND key < ? AND instr(substr(key, ?), '/') = 0",
                                       arguments: [store, r.prefix, r.prefix + "\u{10FFFF}", r.prefix.unicodeScalars.count + 1])
                    } else {
                        try db.execute(sql: "DELETE FROM objects WHERE store = ? AND key >= ? AND key < ?",
                                       arguments: [store, r.prefix, r.prefix + "\u{10FFFF}"])
                    }
                    for o in r.objects {
                        try insert.execute(arguments: [store, o.key, o.size, o.etag, o.lastModified?.timeIntervalSince1970])
                    }
                }
                for gone in listing.vanished {
                    try db.execute(sql: "DELETE FROM objects WHERE store = ? AND key >= ? AND key < ?", arguments: [store, gone, gone + "\u{10FFFF}"])
                }
            }
            let total = try db.read { db in
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM objects WHERE store = ? AND key >= ? AND key < ?", arguments: [store, prefix, upper]) ?? 0
            }
            let known = try db.read { db in
                try Dictionary(Row.fetchAll(db, sql: "SELECT key, etag FROM metadata WHERE store = ? AND key >= ? AND key < ?",
                                           arguments: [store, prefix, upper]).map { ($0["key"] as String, $0["etag"] as String) },
                               uniquingKeysWith: { a, _ in a })
            }
            // Metadata lives in listed ranges only (base/, histories, Velero): sealed WAL directories hold none.
            let wanted = listed.filter { Self.isMetadata($0.key) }
            var fetched = 0
            let todo = wanted.filter { known[$0.key] != $0.etag }
            // Fetched in parallel and stored a batch per transaction: thousands of small GETs and
            // commits one after another would take minutes. An interrupted sync keeps whole batches.
            let batchSize = 256
            for start in stride(from: 0, to: todo.count, by: batchSize) {
                let batch = Array(todo[start..<min(start + batchSize, todo.count)])
                let bodies = try Self.fetchAll(batch.map(\.key), reader: storage, workers: 32)
                // Stored with the listed ETag, the one the next listing is compared with: if the
                // object changed in between, the next sync simply fetches it again.
                try db.write { db in
                    let now = Date().timeIntervalSince1970
                    for (o, body) in zip(batch, bodies) {
                        try db.execute(sql: "INSERT OR REPLACE INTO metadata (store, key, etag, body, fetched_at) VALUES (?, ?, ?, ?, ?)",
                                       arguments: [store, o.key, o.etag, Data(body), now])
                    }
                }
                fetched += batch.count
                progress?("fetched \(fetched) of \(todo.count) metadata objects")
            }
            let present = Set(wanted.map(\.key))
            let stale = known.keys.filter { !present.contains($0) }
            try db.write { db in
                for k in stale { try db.execute(sql: "DELETE FROM metadata WHERE store = ? AND key = ?", arguments: [store, k]) }
                try db.execute(sql: "UPDATE sync_runs SET finished_at = ?, objects = ?, fetched = ? WHERE id = ?",
                               arguments: [Date().timeIntervalSince1970, total, fetched, runID])
            }
            return SyncResult(store: store, prefix: prefix, full: full, listed: listed.count, objects: total, fetched: fetched,
                              removed: stale.count, seconds: Date().timeIntervalSince(started))
        } catch {
            try? db.write { db in
                try db.execute(sql: "UPDATE sync_runs SET finished_at = ?, error = ? WHERE id = ?", arguments: [Date().timeIntervalSince1970, "\(error)", runID])
            }
            throw error
        }
    }

    /// Listed key ranges and what to put in them. A shallow range holds only the keys directly
    /// under its prefix; `vanished` are prefixes that are gone from the bucket.
    struct Listing {
        var ranges: [(prefix: String, shallow: Bool, objects: [StoredObject])] = []
        var vanished: [String] = []
    }

    func fullListing(prefix: String, storage: any StorageReader) throws -> Listing {
        Listing(ranges: [(prefix, false, try storage.listAll(prefix: prefix))])
    }

    /// A barman destination, listing only what can have changed: each server's base/, the files
    /// directly under wals/ (timeline histories), WAL directories the catalog does not know, and
    /// each timeline's newest WAL directory. Older WAL directories stay as catalogued: barman only
    /// ever adds to them (retention deletes, which a full listing catches).
    func incrementalListing(store: String, prefix: String, storage: any StorageReader) throws -> Listing {
        func level(_ p: String) throws -> (objects: [StoredObject], prefixes: [String]) {
            var o: [StoredObject] = [], d: [String] = []
            try storage.list(prefix: p, delimiter: "/", startAfter: nil) { o += $0; d += $1 }
            return (o, d)
        }
        /// The sub-directories of `p` the catalog knows: one index seek per directory (skipping
        /// over its keys), not a scan of everything below `p`.
        func catalogedDirs(_ p: String) throws -> Set<String> {
            try db.read { db in
                var out = Set<String>()
                var from = p
                var inclusive = true
                let end = p + "\u{10FFFF}"
                while let key = try String.fetchOne(db, sql: "SELECT key FROM objects WHERE store = ? AND key \(inclusive ? ">=" : ">") ? AND key < ? ORDER BY key LIMIT 1",
                                                    arguments: [store, from, end]) {
                    let rest = key.dropFirst(p.count)
                    if let slash = rest.firstIndex(of: "/") {
                        let dir = String(key[...slash])
                        out.insert(dir)
                        (from, inclusive) = (dir + "\u{10FFFF}", true)
                    } else {
                        (from, inclusive) = (key, false)
                    }
                }
                return out
            }
        }
        var listing = Listing()
        let top = try level(prefix)
        listing.ranges.append((prefix, true, top.objects))
        listing.vanished += try catalogedDirs(prefix).subtracting(top.prefixes)
        for server in top.prefixes {
            let s = try level(server)
            listing.ranges.append((server, true, s.objects))
            listing.vanished += try catalogedDirs(server).subtracting(s.prefixes)
            for sub in s.prefixes {
                guard sub == server + "wals/" else {
                    listing.ranges.append((sub, false, try storage.listAll(prefix: sub)))
                    continue
                }
                let wals = try level(sub)
                listing.ranges.append((sub, true, wals.objects))
                let known = try catalogedDirs(sub)
                listing.vanished += known.subtracting(wals.prefixes)
                // The newest directory of each timeline (its first 8 hex digits) is still filling.
                var newest: [Substring: String] = [:]
                for d in wals.prefixes {
                    let tli = d.dropFirst(sub.count).prefix(8)
                    if newest[tli].map({ $0 < d }) ?? true { newest[tli] = d }
                }
                let open = Set(newest.values)
                for d in wals.prefixes where open.contains(d) || !known.contains(d) {
                    listing.ranges.append((d, false, try storage.listAll(prefix: d)))
                }
            }
        }
        return listing
    }

    /// The newest finished sync of a store, or nil if it was never synced.
    public func lastSync(store: String) throws -> Date? {
        try db.read { db in
            try Double.fetchOne(db, sql: "SELECT MAX(finished_at) FROM sync_runs WHERE store = ? AND error IS NULL", arguments: [store])
        }.map { Date(timeIntervalSince1970: $0) }
    }

    public func recordRPO(_ s: WorkloadStatus, at: Date) throws {
        try db.write { db in
            try db.execute(sql: "INSERT INTO rpo_history (workload, measured_at, rpo_seconds, objective_seconds, status, evidence, reasons) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           arguments: [s.workload, at.timeIntervalSince1970, s.rpoSeconds, s.rpoObjectiveSeconds, s.status.rawValue, s.recoverablePointEvidence,
                                       s.reasons.isEmpty ? nil : s.reasons.joined(separator: "; ")])
        }
    }

    /// One RPO measurement (drctl status --catalog and drctl serve record them).
    public struct RPOSample: Sendable, Codable, Equatable {
        public var workload: String
        public var at: Date
        public var rpoSeconds: Int?
        public var objectiveSeconds: Int
        public var status: String
        public var reasons: String?
        public init(workload: String, at: Date, rpoSeconds: Int?, objectiveSeconds: Int, status: String, reasons: String?) {
            self.workload = workload; self.at = at; self.rpoSeconds = rpoSeconds; self.objectiveSeconds = objectiveSeconds
            self.status = status; self.reasons = reasons
        }
    }

    /// The measurements from `since` on, oldest first, with the last one before it (it holds at `since`).
    public func rpoHistory(since: Date) throws -> [RPOSample] {
        try db.read { db in
            let sql = """
                SELECT workload, measured_at, rpo_seconds, objective_seconds, status, reasons FROM rpo_history h
                WHERE measured_at >= ?1 OR measured_at = (SELECT MAX(measured_at) FROM rpo_history p WHERE p.workload = h.workload AND p.measured_at < ?1)
                ORDER BY measured_at
                """
            return try Row.fetchAll(db, sql: sql, arguments: [since.timeIntervalSince1970]).map { r in
                RPOSample(workload: r["workload"], at: Date(timeIntervalSince1970: r["measured_at"]), rpoSeconds: r["rpo_seconds"],
                          objectiveSeconds: r["objective_seconds"], status: r["status"], reasons: r["reasons"])
            }
        }
    }

    /// The drills started from `since` on, oldest first.
    public func drills(since: Date) throws -> [DrillEvidence] {
        try db.read { db in
            try Data.fetchAll(db, sql: "SELECT evidence FROM drills WHERE started_at >= ? ORDER BY started_at", arguments: [since.timeIntervalSince1970])
                .map { try DrillEvidence.decoder.decode(DrillEvidence.self, from: $0) }
        }
    }

    /// The bodies of `keys`, in order, read by `workers` threads; the first error is thrown.
    static func fetchAll(_ keys: [String], reader: any StorageReader, workers: Int) throws -> [[UInt8]] {
        try Parallel.map(keys, threads: workers) { try reader.read($0) }
    }

    /// Keeps a drill's evidence (the bucket holds the same JSON; a rebuild takes it from there).
    public func recordDrill(_ e: DrillEvidence) throws {
        let body = try DrillEvidence.encoder.encode(e)
        try db.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO drills (id, workload, started_at, result, rto_seconds, evidence) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [e.id, e.workload, e.startedAt.timeIntervalSince1970, e.result.rawValue, e.rtoSeconds, body])
        }
    }

    /// Keeps a site rehearsal's record (the store it came back from holds the same JSON, sealed).
    public func recordRehearsal(_ e: RehearsalEvidence) throws {
        let body = try RehearsalEvidence.encoder.encode(e)
        try db.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO rehearsals (id, started_at, result, site_rto_seconds, evidence) VALUES (?, ?, ?, ?, ?)",
                           arguments: [e.id, e.startedAt.timeIntervalSince1970, e.result.rawValue, e.siteRTOSeconds, body])
        }
    }

    /// The rehearsals started from `since` on, oldest first.
    public func rehearsals(since: Date) throws -> [RehearsalEvidence] {
        try db.read { db in
            try Data.fetchAll(db, sql: "SELECT evidence FROM rehearsals WHERE started_at >= ? ORDER BY started_at", arguments: [since.timeIntervalSince1970])
                .map { try RehearsalEvidence.decoder.decode(RehearsalEvidence.self, from: $0) }
        }
    }

    /// The newest drills of a workload (or of all), newest first.
    public func drills(workload: String? = nil, limit: Int = 20) throws -> [DrillEvidence] {
        try db.read { db in
            let rows = try Data.fetchAll(db, sql: "SELECT evidence FROM drills \(workload == nil ? "" : "WHERE workload = ?") ORDER BY started_at DESC LIMIT ?",
                                         arguments: StatementArguments(workload.map { [$0, limit] as [DatabaseValueConvertible] } ?? [limit]))
            return try rows.map { try DrillEvidence.decoder.decode(DrillEvidence.self, from: $0) }
        }
    }

    /// A view of one store as a (read-only) store, so the scanners read the catalog like the bucket.
    public func reader(store: String) -> any StorageReader { CatalogReader(catalog: self, store: store) }
}

/// The catalog's copy of one store: its listing and the metadata objects it fetched. Data
/// objects (tars, WAL) are listed but not held: reading one is an error naming the store.
struct CatalogReader: StorageReader {
    let catalog: CatalogStore
    let store: String
    var location: String { "catalog:\(store)" }
    var identity: String { store }

    func list(prefix: String, delimiter: String?, startAfter: String?, _ page: ([StoredObject], [String]) throws -> Void) throws {
        let rows = try catalog.db.read { db in
            try Row.fetchAll(db, sql: "SELECT key, size, etag, last_modified FROM objects WHERE store = ? AND key >= ? AND key < ? AND key > ? ORDER BY key",
                             arguments: [store, prefix, prefix + "\u{10FFFF}", startAfter ?? ""])
        }
        var objects: [StoredObject] = []
        var prefixes: [String] = []
        for r in rows {
            let key: String = r["key"]
            if let delimiter, let cut = key.dropFirst(prefix.count).range(of: delimiter) {
                let p = String(key[..<cut.upperBound])
                if prefixes.last != p { prefixes.append(p) }
                continue
            }
            let modified: Double? = r["last_modified"]
            objects.append(StoredObject(key: key, size: r["size"], etag: r["etag"], lastModified: modified.map { Date(timeIntervalSince1970: $0) }))
        }
        try page(objects, prefixes)
    }

    func head(_ key: String) throws -> StoredObject? {
        let row = try catalog.db.read { db in
            try Row.fetchOne(db, sql: "SELECT size, etag, last_modified FROM objects WHERE store = ? AND key = ?", arguments: [store, key])
        }
        return row.map { r in
            let modified: Double? = r["last_modified"]
            return StoredObject(key: key, size: r["size"], etag: r["etag"], lastModified: modified.map { Date(timeIntervalSince1970: $0) })
        }
    }

    func get(_ key: String, range: ClosedRange<Int64>?, _ chunk: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let body = try catalog.db.read({ db in
            try Data.fetchOne(db, sql: "SELECT body FROM metadata WHERE store = ? AND key = ?", arguments: [store, key])
        }) else {
            throw StorageError.io("\(key) is not in the catalog: run drctl catalog sync")
        }
        let bytes = Array(body)
        let lo = Int(range?.lowerBound ?? 0), hi = min(bytes.count, Int(range.map { $0.upperBound + 1 } ?? Int64(bytes.count)))
        guard lo < hi else { return }
        try bytes[lo..<hi].withUnsafeBytes { try chunk($0) }
    }

    /// The catalog does not record the bucket's Object Lock: the bucket is asked (Evaluation).
    func bucketLock() throws -> BucketLock { throw StorageError.io("the catalog does not hold \(store)'s Object Lock configuration") }
}

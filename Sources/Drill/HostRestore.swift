import Catalog
import Codecs
import Foundation
import Hashing
import Layout
import Support
import Paths
import Storage

/// Where a barman-cloud server's backups are: the store (a bucket, or a copy of it on disk),
/// the destinationPath and serverName.
public struct BarmanSource: Sendable {
    public var storage: any StorageReader
    public var layout: BarmanLayout
    public var server: String
    /// drctl options that make `drctl wal-restore` reach the same store (endpoint, region,
    /// addressing, TLS). The keys (`credentials`) reach it through a file only the server's user
    /// can read, never its environment or command line (HostRestore).
    public var clientArguments: [String]
    public var secretFiles: [(name: String, value: String)]

    public init(storage: any StorageReader, layout: BarmanLayout, server: String, clientArguments: [String] = [], secretFiles: [(name: String, value: String)] = []) {
        self.storage = storage
        self.layout = layout
        self.server = server
        self.clientArguments = clientArguments
        self.secretFiles = secretFiles
    }

    public init(access: StoreAccess, layout: BarmanLayout, server: String) {
        self.init(storage: access.storage, layout: layout, server: server, clientArguments: access.childArguments, secretFiles: access.secretFiles)
    }

    public var walSource: WALSource { WALSource(storage: storage, layout: layout, server: server) }
    /// The destination as `drctl wal-restore --source` takes it.
    public var destination: String { layout.root.isEmpty ? storage.location : "\(storage.location)/\(layout.root)" }
}

public struct HostRestoreOptions: Sendable {
    public var scratchBase: String = NSTemporaryDirectory()
    public var pgBin: String?
    /// When drctl runs as root, PostgreSQL runs as this user.
    public var runAsUser = "postgres"
    /// The role checks connect as (the restored cluster's superuser).
    public var databaseUser = "postgres"
    /// Restore into this (empty) directory and keep it; nil: a scratch data directory.
    public var targetDirectory: String?
    public var port: Int?
    public var allowTCP = false
    public var prefetchWindow = 16
    public var prefetchWorkers = 4
    /// Give up on recovery after this long.
    public var timeout: TimeInterval = 3600
    public var kind = "drill"
    /// drctl's owner id (ScratchDirectory.ownerID): marks the directories this restore makes, and
    /// is the only proof that a leftover directory is drctl's to clean up.
    public var owner = ""
    /// Refuse up front a restore the disk cannot hold (ScratchSpace).
    public var checkSpace = true
    /// Libraries the restored server may preload (the policy's `drill.preloadLibraries`).
    public var preloadLibraries: [String] = []
    /// Shared buffers for replay, in MB (nil: a share of the host's free memory).
    public var sharedBuffersMB: Int?
    /// A kept restore (`drctl restore --fast-unsafe`) replays as a drill does, without fsync;
    /// before it is handed over the server is shut down, the data directory synced and the server
    /// started again with fsync on. A crash of the host during replay can corrupt the directory:
    /// the restore is then run again.
    public var unsafeReplay = false
    public init() {}

    /// A kept restore replaying without fsync (`unsafeReplay`): it syncs once at the end instead.
    var syncsAfterReplay: Bool { kind != "drill" && unsafeReplay }
    /// Whether replay flushes what it writes: a drill's directory is thrown away, and
    /// `syncsAfterReplay` flushes once at the end instead.
    var durableReplay: Bool { kind != "drill" && !syncsAfterReplay }
}

/// What a finished recovery achieved.
public struct RecoveryOutcome: Sendable, Codable {
    public var server: String
    public var backupID: String
    public var target: String
    /// The commit time of the last transaction replayed (pg_last_xact_replay_timestamp()), or the
    /// base backup's end when recovery replayed none.
    public var achieved: Date?
    /// How the server log says recovery ended.
    public var stop: String
    public var timeline: UInt32?
    public var walSegmentsRestored: Int
    public var baseBytes: Int64
    public var walBytes: Int64
    public var dataDirectory: String
    public var port: Int
    public var phases: [String: Double]
    /// Settings of the backup's own postgresql.auto.conf (or recovery.conf) that the restored
    /// server did not read, by name; and where those files were put.
    public var setAside: [String] = []
    public var setAsideFiles: [String] = []
    /// What was restored, bound to the bytes read (backup.info and each archive).
    public var proof: RestoreProof?
    /// The replay tuning the server ran with (BackupConfiguration.replaySettings).
    public var replaySettings: [String: String] = [:]
}

public struct RecoveryError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// A base backup whose archive does not unpack (damaged, or written by someone who can write
/// the bucket), or that changed while it was read: not the store failing, the backup itself.
public struct BaseBackupUnreadable: Error, CustomStringConvertible, Sendable {
    public var backupID: String
    public var why: String
    public var description: String { "base backup \(backupID) cannot be restored: \(why)" }
}

/// Restores one barman-cloud base backup on this host and replays WAL to the plan's target
/// with a local PostgreSQL. The server is left running (promoted) for checks; `finish` stops
/// it and removes everything the restore created, unless told to keep it.
public final class HostRestore: @unchecked Sendable {
    public let plan: RestorePlan
    public let source: BarmanSource
    public let options: HostRestoreOptions
    let progress: (String) -> Void
    let transfer: TransferProgress?
    public private(set) var scratch: ScratchDirectory?
    public private(set) var server: RecoveryServer?
    private var prefetcher: WALPrefetcher?
    private var ownsDataDirectory = true
    /// A socket directory outside the scratch directory (when its path was too long for one).
    private var socketDirectory: String?
    /// The store's keys for `drctl wal-restore`, while recovery runs.
    private var credentialsDirectory: String?

    public init(plan: RestorePlan, source: BarmanSource, options: HostRestoreOptions, progress: @escaping (String) -> Void,
                transfer: TransferProgress? = nil) {
        self.plan = plan
        self.source = source
        self.options = options
        self.progress = progress
        self.transfer = transfer
    }

    public func run() throws -> RecoveryOutcome {
        let binaries = try PostgresBinaries.find(major: plan.pgMajor, override: options.pgBin)
        let runAs = try RunAs.forCurrentProcess(user: options.runAsUser)
        if let runAs { try Self.checkRestoreCommand(runAs: runAs) }
        if let dir = options.targetDirectory { try Self.checkEmptyTarget(dir) }
        guard !options.owner.isEmpty else { throw LocalError("no owner id for the scratch directory") }
        ScratchDirectory.removeStale(base: options.scratchBase, owner: options.owner, progress: progress)
        let scratch = try ScratchDirectory(base: options.scratchBase, kind: options.kind, name: source.server, runAs: runAs, owner: options.owner)
        self.scratch = scratch
        let dataDir = options.targetDirectory.map { ($0 as NSString).standardizingPath } ?? scratch.path + "/data"
        ownsDataDirectory = options.targetDirectory == nil
        var phases: [String: Double] = [:]
        let segment = plan.backup.segmentSize
        let needs = [("the data directory", dataDir, ScratchSpace.dataDirectory(clusterSize: plan.backup.clusterSize, archivedBytes: plan.baseBytes,
                                                                             walNeeded: plan.walNeeded, segmentSize: segment)),
                     ("the WAL read-ahead", scratch.path, ScratchSpace.spool(prefetchWindow: options.prefetchWindow, segmentSize: segment))]
        if options.checkSpace, let short = ScratchSpace.shortfall(needs, free: ScratchSpace.free(at:)) {
            throw RecoveryError("not enough disk for this restore: \(short); make room, or restore elsewhere (--scratch-dir, --to)")
        }

        // 1. Base backup: stream each tar from the bucket through gzip into the data directory,
        // hashing what is read: a passing drill proves these bytes, and retention trusts only that.
        var t0 = Date()
        var baseBytes: Int64 = 0
        var proven: [RestoreProof.Object] = [try proofOfBackupInfo()]
        let total = plan.baseBytes
        for archive in plan.archives {
            progress("fetching \(archive.key) (\(formatBytes(archive.size))\(archive.compression.map { ", \($0)" } ?? ""))")
            let tar = try TarExtractor(root: dataDir)
            let gz = try archive.compression.map { _ in try GzipStream() }
            let done = baseBytes
            var overall: TransferProgress?
            if let transfer { overall = { n, _ in transfer(done + n, total) } }
            let backupID = plan.backup.backupID
            let consume: (UnsafeRawBufferPointer) throws -> Void = { chunk in
                if Cleanup.shared.isAborting { throw RecoveryError("interrupted") }
                do {
                    if let gz {
                        try gz.feed(chunk) { try tar.feed($0) }
                    } else {
                        try tar.feed(chunk)
                    }
                } catch {
                    throw BaseBackupUnreadable(backupID: backupID, why: "\(archive.key): \(error)")
                }
            }
            var read: Int64 = 0
            let before = try source.storage.head(archive.key)
            let sha = SHA256Stream()
            try source.storage.get(archive.key, range: nil) { chunk in
                sha.update(chunk)
                try consume(chunk)
                read += Int64(chunk.count)
                overall?(read, archive.size)
            }
            let after = try source.storage.head(archive.key)
            do { try gz?.finish() } catch { throw BaseBackupUnreadable(backupID: backupID, why: "\(archive.key): \(error)") }
            do { try tar.finish() } catch { throw BaseBackupUnreadable(backupID: backupID, why: "\(archive.key): \(error)") }
            guard read == archive.size else {
                throw RecoveryError("\(archive.key) is \(read) bytes, the listing said \(archive.size): it changed during the restore")
            }
            guard let before, let after, before.etag == after.etag, before.size == read else {
                throw RecoveryError("\(archive.key) changed during the restore (its ETag or size moved while it was read)")
            }
            proven.append(.init(key: source.layout.relative(archive.key), size: read, etag: after.etag.isEmpty ? nil : after.etag, sha256: sha.finish()))
            baseBytes += read
        }
        try prepareDataDirectory(dataDir, binaries: binaries)
        let (setAside, setAsideFiles) = try setAsideConfiguration(dataDir, into: ownsDataDirectory ? scratch.path + "/set-aside" : nil)
        if !setAsideFiles.isEmpty {
            let what = setAsideFiles.map { "\(($0 as NSString).lastPathComponent.replacingOccurrences(of: ".drctl-set-aside", with: "")) (kept as \($0))" }
            progress("the restored server does not read the backup's \(what.joined(separator: ", "))"
                     + (setAside.isEmpty ? "" : ": it sets \(setAside.joined(separator: ", "))"))
        }
        phases["download_unpack"] = Date().timeIntervalSince(t0)
        progress("base backup \(plan.backup.backupID) unpacked: \(formatBytes(baseBytes)) in \(String(format: "%.1f", phases["download_unpack"]!))s")

        // 2. Recovery configuration and the WAL read-ahead.
        let spool = scratch.path + "/spool"
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        // A kept data directory holds its own config, socket and log, so it can be started
        // (or left running) after the scratch directory is gone.
        let home = ownsDataDirectory ? scratch.path : dataDir
        let socketHome = ownsDataDirectory ? home + "/socket" : home
        let socketDir: String
        if socketHome.utf8.count < 80 {
            socketDir = ownsDataDirectory ? try scratch.subdirectory("socket", runAs: runAs) : home
        } else {
            let short = try Self.shortSocketDirectory(runAs: runAs, owner: options.owner, serving: dataDir)
            socketDirectory = short
            socketDir = short + "/s"
        }
        let port = try options.port ?? freeLoopbackPort()
        let server = RecoveryServer(binaries: binaries, dataDir: dataDir, configDir: home, socketDir: socketDir, port: port,
                                    logFile: home + (ownsDataDirectory ? "/postgres.log" : "/drctl-postgres.log"), runAs: runAs, user: options.databaseUser,
                                    preload: options.preloadLibraries)
        // A drill's directory is thrown away: replay without flushing; a real restore keeps durability.
        let sharedBuffers = options.sharedBuffersMB ?? BackupConfiguration.sharedBuffersMB(memAvailableKB: BackupConfiguration.memAvailableKB())
        server.tuning = BackupConfiguration.replaySettings(major: binaries.major, durable: options.durableReplay, sharedBuffersMB: sharedBuffers)
        let replayTuning = server.tuning
        self.server = server
        let credentials = try writeCredentials(scratch.path + "/credentials", runAs: runAs)
        credentialsDirectory = credentials
        let clientArguments = try Self.readableCABundle(source.clientArguments, copyInto: credentials, runAs: runAs)
        let restoreCommand = RecoveryServer.restoreCommand([Subprocess.currentExecutable, "wal-restore", "--spool", spool] + clientArguments
                                                           + ["--credentials-dir", credentials, "--source", source.destination, "--server", source.server])
        let target: RecoveryTarget = plan.immediate == true ? .backup(plan.backup.backupID) : plan.targetTime.map { .time($0) } ?? .latest
        try server.writeConfig(restoreCommand: restoreCommand, target: target, allowTCP: options.allowTCP)
        if let runAs { try runAs.chownTree(dataDir); try runAs.chownTree(spool) }
        let prefetcher = WALPrefetcher(source: source.walSource, files: plan.wal, spool: spool, window: options.prefetchWindow,
                                       workers: options.prefetchWorkers, owner: runAs)
        self.prefetcher = prefetcher
        try prefetcher.start()

        // 3. Replay.
        t0 = Date()
        // Nothing secret in the server's environment: any superuser of the restored database
        // could read it (/proc/self/environ).
        var env = ["PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "TZ": "UTC"]
        // drctl's crash-report setting, so each `drctl wal-restore` PostgreSQL runs starts as is
        // instead of re-executing itself to set it.
        env["SWIFT_BACKTRACE"] = ProcessInfo.processInfo.environment["SWIFT_BACKTRACE"]
        progress("recovering with PostgreSQL \(binaries.major) on 127.0.0.1:\(port) (target \(plan.target), WAL \(plan.walRange))")
        try server.start(environment: env)
        var fellBack = false
        let deadline = Date().addingTimeInterval(options.timeout)
        var reported = 0
        while true {
            if Cleanup.shared.isAborting { throw RecoveryError("interrupted") }
            let log = server.log()
            let restored = log.components(separatedBy: "restored log file \"").count - 1
            if restored >= reported + 16 || (restored > reported && Date().timeIntervalSince(t0) > 2) {
                reported = restored
                progress("WAL replay: \(restored) segments restored")
            }
            if log.contains("database system is ready to accept connections") { break }
            if let st = server.exited() {
                if !fellBack, plan.targetTime != nil, log.contains("recovery ended before configured recovery target was reached") {
                    // Every archived transaction is older than the target: the archive's end is
                    // the closest point there is. Continue recovery to it without a target.
                    fellBack = true
                    progress("the archive ends before the target: recovering to its end (the newest archived transaction)")
                    try server.writeConfig(restoreCommand: restoreCommand, target: .latest, allowTCP: options.allowTCP)
                    try server.start(environment: env)
                    continue
                }
                if let f = prefetcher.firstFailure {
                    throw RecoveryError("WAL segment \(f.name) could not be fetched: \(f.error) (PostgreSQL stopped during recovery, exit \(st): \(server.logProblem()))")
                }
                throw RecoveryError("PostgreSQL stopped during recovery (exit \(st)): \(server.logProblem())")
            }
            if Date() > deadline {
                throw RecoveryError("recovery did not finish within \(Int(options.timeout))s; last log lines: \(server.logProblem())")
            }
            usleep(50_000)
        }
        prefetcher.stop()
        // Promoted: restore_command has run for the last time; the keys go before any client connects.
        removeCredentials()
        phases["wal_replay"] = Date().timeIntervalSince(t0)
        // 4. Where recovery stopped, from the server itself and from its log.
        let row = try server.query("""
            select pg_is_in_recovery(),
                   coalesce(to_char(pg_last_xact_replay_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), ''),
                   substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)
            """).split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard row.count == 3 else { throw RecoveryError("unexpected answer from the recovered server: \(row)") }
        guard row[0] == "f" else { throw RecoveryError("the server is still in recovery: it was not promoted") }
        // No transaction replayed: the data is as of the backup's consistent point, its end.
        let achieved = row[1].isEmpty ? plan.backup.endTime : RFC3339.parse(row[1])
        let log = server.log()
        let lines = log.split(separator: "\n")
        let stopLine = (lines.last { $0.contains("recovery stopping") } ?? lines.last { $0.contains("last completed transaction was at log time") })
            .map { l in l.range(of: "LOG:  ").map { String(l[$0.upperBound...]) } ?? String(l) } ?? "end of archived WAL"
        if let t = plan.targetTime, let a = achieved, a > t.addingTimeInterval(0.000001) {
            throw RecoveryError("recovery overshot: the last replayed transaction committed at \(TargetTime.rfc3339(a)), after the target \(TargetTime.rfc3339(t))")
        }
        let restored = log.components(separatedBy: "restored log file \"").count - 1
        // Read above while the server still knows where replay stopped: after a restart it is a
        // server started without recovery (pg_last_xact_replay_timestamp() is NULL).
        if options.syncsAfterReplay {
            // Replayed without fsync: nothing is handed over until it is all on disk and the server runs with fsync on.
            t0 = Date()
            progress("replayed without fsync (--fast-unsafe): shutting the server down, syncing \(dataDir), starting it with fsync on")
            let mark = server.log().utf8.count
            server.stop(mode: "fast")
            guard String(decoding: server.log().utf8.dropFirst(mark), as: UTF8.self).contains("database system is shut down") else {
                throw RecoveryError("the restored server did not shut down cleanly after replay without fsync: \(server.logProblem()); restore again without --fast-unsafe")
            }
            try Self.syncDataDirectory(dataDir, binaries: binaries, runAs: runAs)
            server.tuning = BackupConfiguration.replaySettings(major: binaries.major, durable: true, sharedBuffersMB: sharedBuffers)
            try server.start(environment: env)
            try server.waitReady(logAfter: mark, deadline: Date().addingTimeInterval(min(options.timeout, 600)))
            phases["sync_restart"] = Date().timeIntervalSince(t0)
        }
        // What is proven must be what was restored: nothing of the backup changed meanwhile.
        guard try stillSame(proven) else {
            throw RecoveryError("backup \(plan.backup.backupID) changed in the store during the restore (its backup.info or an archive has another ETag now): not proven")
        }
        if options.kind != "drill" {
            // Handed over only once it is all on disk: a crash right after drctl returns loses nothing.
            try server.checkpoint()
        }
        progress("recovered to \(achieved.map(TargetTime.rfc3339) ?? "?")\(row[1].isEmpty ? " (the base backup's end: no transaction replayed)" : ""): \(stopLine)")
        return RecoveryOutcome(server: source.server, backupID: plan.backup.backupID, target: fellBack ? "\(plan.target) (archive ended first)" : plan.target,
                               achieved: achieved, stop: stopLine, timeline: UInt32(row[2], radix: 16), walSegmentsRestored: restored,
                               baseBytes: baseBytes, walBytes: prefetcher.bytes, dataDirectory: dataDir, port: port, phases: phases,
                               setAside: setAside, setAsideFiles: setAsideFiles,
                               proof: RestoreProof(backupID: plan.backup.backupID, objects: proven, walFirst: plan.wal.first?.name, walLast: plan.wal.last?.name),
                               replaySettings: Dictionary(replayTuning.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 }))
    }

    /// PostgreSQL, running as `runAs`, runs this drctl as its restore_command: known before
    /// anything is downloaded, not from the server's "command not executable" after it started.
    /// Proven by running `drctl --version` as that user; the directory in the way is named.
    static func checkRestoreCommand(runAs: RunAs) throws {
        let exe = Subprocess.currentExecutable
        let (program, args) = try runAs.wrap(exe, ["--version"])
        if let (status, _) = try? Subprocess.run(program, args, env: ["PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"]), status == 0 { return }
        let blocked = runAs.cannotReach(exe).map { $0 == exe ? "cannot execute \($0)" : "cannot enter \($0)" } ?? "cannot execute \(exe)"
        throw RecoveryError("PostgreSQL runs as \(runAs.user) and runs drctl as its restore_command, but \(runAs.user) \(blocked): "
                            + "install drctl where \(runAs.user) can run it (e.g. /usr/local/bin) or pass --run-as a user that can; nothing was downloaded")
    }

    /// Every file of a data directory flushed to disk, as PostgreSQL itself does it
    /// (`initdb --sync-only`: the directory, pg_wal and every tablespace it links), run as the
    /// server's user.
    static func syncDataDirectory(_ dataDir: String, binaries: PostgresBinaries, runAs: RunAs?) throws {
        var (program, args) = (binaries.bin + "/initdb", ["--sync-only", "-D", dataDir])
        if let runAs { (program, args) = try runAs.wrap(program, args) }
        let (status, output) = try Subprocess.run(program, args, env: ["PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"])
        guard status == 0 else { throw RecoveryError("syncing \(dataDir) failed (initdb --sync-only, exit \(status)): \(output.suffix(400))") }
    }

    /// The backup's backup.info, read once, checked to say what the plan was made from (status,
    /// times, WAL range, timeline): the bytes a drill proves are the ones it restored by, and
    /// what retention will read later. `stillSame` checks at the end that it did not change meanwhile.
    func proofOfBackupInfo() throws -> RestoreProof.Object {
        let key = source.layout.backupInfoKey(server: source.server, backupID: plan.backup.backupID)
        let before = try source.storage.head(key)
        let bytes = try source.storage.read(key, limit: 1 << 20)
        guard let before, before.size == Int64(bytes.count), try source.storage.head(key)?.etag == before.etag else {
            throw RecoveryError("\(key) changed during the restore")
        }
        let info: BackupInfo
        do { info = try BackupInfo(parsing: String(decoding: bytes, as: UTF8.self)) } catch { throw RecoveryError("\(key): \(error)") }
        let b = plan.backup
        guard info.statusText == b.status, info.beginWAL?.name == b.beginWAL, info.endWAL?.name == b.endWAL, info.timeline == b.timeline,
              info.beginTime == b.beginTime, info.endTime == b.endTime else {
            throw RecoveryError("\(key) is not the backup.info the restore was planned from (it changed since): not restored")
        }
        return .init(key: source.layout.relative(key), size: before.size, etag: before.etag.isEmpty ? nil : before.etag, sha256: Hash.sha256(bytes).hex)
    }

    /// Whether the objects a proof names are still, by their ETag, the ones read.
    func stillSame(_ objects: [RestoreProof.Object]) throws -> Bool {
        for o in objects where o.etag != nil {
            guard try source.storage.head(source.layout.absolute(o.key))?.etag == o.etag else { return false }
        }
        return true
    }

    /// A restore to a time (or the latest point) that gets past base backups it cannot read: when
    /// the chosen backup's archive does not unpack, the target directory is emptied and the
    /// restore starts again from the restorable backup before it, which reaches the same target
    /// through more WAL. A restore to a named backup, and a drill (which must prove the newest
    /// backup restores), never fall back. Returns the restore that succeeded (its server as
    /// `run` leaves it), what it achieved, its plan, and each backup passed over with why.
    public static func runFallingBack(plan first: RestorePlan, scan: BarmanServerScan, archive: WALArchive, target: RecoveryTarget, now: Date,
                                      source: BarmanSource, options: HostRestoreOptions, progress: @escaping (String) -> Void,
                                      transfer: TransferProgress? = nil) throws -> (HostRestore, RecoveryOutcome, RestorePlan, [BaseBackupUnreadable]) {
        var plan = first
        var passedOver: [BaseBackupUnreadable] = []
        while true {
            let restore = HostRestore(plan: plan, source: source, options: options, progress: progress, transfer: transfer)
            do {
                return (restore, try restore.run(), plan, passedOver)
            } catch let bad as BaseBackupUnreadable {
                restore.finish(success: false)
                if case .backup = target { throw bad }
                passedOver.append(bad)
                do {
                    plan = try RestorePlanner.plan(server: source.server, scan: scan, archive: archive, target: target, now: now,
                                                   excluding: Set(passedOver.map(\.backupID)))
                } catch {
                    throw RecoveryError("\(passedOver.map(\.description).joined(separator: "; ")); and no other backup reaches the target: \(error)")
                }
                progress("\(bad); restoring from the backup before it, \(plan.backup.backupID), instead (more WAL to replay, the same target)")
            } catch {
                Cleanup.shared.parkIfAborting()
                restore.finish(success: false)
                throw error
            }
        }
    }

    /// Ends the restore. A drill's server is stopped and its scratch directory removed. A
    /// restore into a target directory keeps that directory on success (its server stopped
    /// cleanly, or left running with `keepRunning`) and empties it again on failure. `keepScratch`
    /// (--keep) leaves everything, server included, for inspection.
    public func finish(success: Bool, keepRunning: Bool = false, keepScratch: Bool = false) {
        prefetcher?.stop()
        removeCredentials()
        if keepScratch {
            if let server { Cleanup.shared.removeProcessGroup(server.pid) }
            for dir in [scratch?.path, socketDirectory].compactMap({ $0 }) { Cleanup.shared.removeDirectory(dir) }
            return
        }
        if let server {
            if success && keepRunning && !ownsDataDirectory {
                Cleanup.shared.removeProcessGroup(server.pid)
            } else {
                server.stop(mode: success && !ownsDataDirectory ? "fast" : "immediate")
                if success && !ownsDataDirectory {
                    // Recovery is over: the kept directory's config loses restore_command.
                    try? server.writeConfig(restoreCommand: nil, target: nil, allowTCP: true)
                    markHistoryForArchiving(server.dataDir, runAs: server.runAs)
                }
            }
        }
        if let dir = socketDirectory {
            if success && keepRunning && !ownsDataDirectory {
                // The running server's socket lives there: no longer drctl's to clean up (without
                // its marker, a later run's stale-directory sweep leaves it and the server alone).
                unlink(dir + "/" + ScratchDirectory.markerName)
                Cleanup.shared.removeDirectory(dir)
            } else {
                Cleanup.removeTree(dir)
                Cleanup.shared.removeDirectory(dir)
            }
        }
        if !success, !ownsDataDirectory, let dir = options.targetDirectory {
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] { Cleanup.removeTree(dir + "/" + entry) }
        }
        scratch?.remove()
    }

    /// The promotion wrote a timeline history file while archiving was off, so PostgreSQL did
    /// not queue it for the archiver. Queue it: if this directory becomes a primary that
    /// archives (into the same serverName, as after a failover), recovery from the archive can
    /// then follow the new timeline.
    func markHistoryForArchiving(_ dir: String, runAs: RunAs?) {
        let wal = dir + "/pg_wal"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: wal)) ?? [] where name.hasSuffix(".history") {
            let status = "\(wal)/archive_status/\(name)"
            guard !FileManager.default.fileExists(atPath: status + ".done"), !FileManager.default.fileExists(atPath: status + ".ready") else { continue }
            FileManager.default.createFile(atPath: status + ".ready", contents: Data())
            if let runAs { lchown(status + ".ready", runAs.uid, runAs.gid) }
        }
    }

    /// Makes an unpacked base backup startable: permissions, an empty pg_wal, recovery.signal,
    /// and the manifest checked where pg_basebackup left one.
    func prepareDataDirectory(_ dir: String, binaries: PostgresBinaries) throws {
        let fm = FileManager.default
        guard fm.fileExists(atPath: dir + "/backup_label") else {
            throw RecoveryError("the base backup has no backup_label: not a barman-cloud/pg_basebackup data directory")
        }
        guard fm.fileExists(atPath: dir + "/PG_VERSION") else { throw RecoveryError("the base backup has no PG_VERSION") }
        // PostgreSQL would create pg_tblspc links to the paths tablespace_map names and replay
        // into them: anywhere on this host. Tablespace backups are refused when planned, so a
        // non-empty map here is a damaged or doctored backup.
        var st = stat()
        if lstat(dir + "/tablespace_map", &st) == 0 {
            // Read as bytes, as PostgreSQL does: any content at all, or anything but a file, is refused.
            let bytes = (st.st_mode & S_IFMT) == S_IFREG && st.st_size < 1 << 20 ? fm.contents(atPath: dir + "/tablespace_map").map(Array.init) : nil
            if bytes == nil || bytes!.contains(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) {
                throw RecoveryError("the base backup has a tablespace_map but no tablespace archives: refused (PostgreSQL would link and replay into the paths it names; restoring tablespaces is not supported)")
            }
        }
        let version = (try? String(contentsOfFile: dir + "/PG_VERSION", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        guard version == String(binaries.major) else {
            throw RecoveryError("the data directory is PostgreSQL \(version ?? "?"), backup.info said \(binaries.major)")
        }
        chmod(dir, 0o700)
        try fm.createDirectory(atPath: dir + "/pg_wal/archive_status", withIntermediateDirectories: true)
        for stale in ["standby.signal", "postmaster.pid", "postmaster.opts"] { unlink(dir + "/" + stale) }
        guard fm.createFile(atPath: dir + "/recovery.signal", contents: Data()) else { throw RecoveryError("cannot create \(dir)/recovery.signal") }
        if fm.fileExists(atPath: dir + "/backup_manifest"), fm.isExecutableFile(atPath: binaries.bin + "/pg_verifybackup") {
            let (st, out) = try Subprocess.run(binaries.bin + "/pg_verifybackup", ["--no-parse-wal", "--quiet", dir], env: ["PATH": "/usr/bin:/bin"])
            guard st == 0 else { throw RecoveryError("pg_verifybackup: the restored files do not match backup_manifest: \(out)") }
            progress("backup_manifest verified (pg_verifybackup)")
        }
    }

    /// Moves the backup's postgresql.auto.conf and recovery.conf out of the way before the
    /// first start: PostgreSQL reads postgresql.auto.conf from the data directory whatever
    /// config_file says, and it wins over it (an archive_command there would run on this host,
    /// and could archive into production's archive). A drill keeps them in its scratch
    /// directory; a restore into a directory keeps them beside it as `<name>.drctl-set-aside`
    /// for whoever makes that directory a primary. Returns the settings they held (names only)
    /// and where they went.
    func setAsideConfiguration(_ dir: String, into holding: String?) throws -> (settings: [String], files: [String]) {
        var settings: [String] = [], files: [String] = []
        for name in BackupConfiguration.dataDirectoryFiles {
            let path = dir + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFREG, st.st_size < 1 << 20, let text = try? String(contentsOfFile: path, encoding: .utf8) {
                settings += BackupConfiguration.settingNames(text).filter { !settings.contains($0) }
            }
            let destination: String
            if let holding {
                try FileManager.default.createDirectory(atPath: holding, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                destination = holding + "/" + name
            } else {
                destination = path + ".drctl-set-aside"
            }
            guard rename(path, destination) == 0 else {
                throw RecoveryError("cannot set aside the backup's \(name) (\(destination)): \(String(cString: strerror(errno)))")
            }
            files.append(destination)
        }
        return (settings, files)
    }

    /// The client's keys as a credentials directory (files ACCESS_KEY_ID, SECRET_ACCESS_KEY and
    /// SESSION_TOKEN, as `--credentials-dir` reads them), 0700/0600 and owned by the server's
    /// user, for `drctl wal-restore`; removed once the server is promoted.
    func writeCredentials(_ dir: String, runAs: RunAs?) throws -> String {
        try FileTree.createPrivateDirectory(dir, owner: runAs)
        // A store on disk has none.
        for (name, value) in source.secretFiles { try FileTree.createPrivateFile(dir + "/" + name, contents: Array(value.utf8), owner: runAs) }
        return dir
    }

    /// `--ca-bundle FILE` of wal-restore's arguments pointed at a copy the server's user can read
    /// (the original may be drctl's alone, e.g. in root's home).
    static func readableCABundle(_ arguments: [String], copyInto dir: String, runAs: RunAs?) throws -> [String] {
        guard let i = arguments.firstIndex(of: "--ca-bundle"), i + 1 < arguments.count else { return arguments }
        let copy = dir + "/ca.pem"
        guard let pem = FileManager.default.contents(atPath: arguments[i + 1]) else { throw LocalError("cannot read the CA bundle \(arguments[i + 1])") }
        try FileTree.createPrivateFile(copy, contents: Array(pem), owner: runAs)
        var out = arguments
        out[i + 1] = copy
        return out
    }

    private func removeCredentials() {
        guard let dir = credentialsDirectory else { return }
        Cleanup.removeTree(dir)
        credentialsDirectory = nil
    }

    static func checkEmptyTarget(_ dir: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) {
            guard isDir.boolValue else { throw RecoveryError("\(dir) exists and is not a directory") }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            guard entries.isEmpty else { throw RecoveryError("\(dir) is not empty (\(entries.count) entries): drctl restores into an empty or new directory only") }
        }
    }

    /// Unix socket paths are limited to 107 bytes: a deep scratch directory gets its socket
    /// elsewhere, in `s` of a marked directory of drctl's (as a scratch directory is).
    static func shortSocketDirectory(runAs: RunAs?, owner: String, serving dataDirectory: String) throws -> String {
        var template = Array("/tmp/drctl-sock-\(getpid())-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw LocalError("mkdtemp: \(String(cString: strerror(errno)))") }
        let path = String(cString: p)
        do {
            try Cleanup.shared.register(directory: path)   // refused once a signal's cleanup has begun
        } catch {
            rmdir(path)
            throw error
        }
        try ScratchDirectory.mark(path, owner: owner, serving: dataDirectory)
        try FileTree.createPrivateDirectory(path + "/s", owner: runAs)
        if runAs != nil { chmod(path, 0o711) }
        return path
    }
}

import Codecs
import Foundation
import Layout
import Support
import Storage

/// One barman-cloud server's WAL in a store, as restore_command reads it.
public struct WALSource: Sendable {
    public let storage: any StorageReader
    public let layout: BarmanLayout
    public let server: String

    public init(storage: any StorageReader, layout: BarmanLayout, server: String) {
        self.storage = storage
        self.layout = layout
        self.server = server
    }

    /// Finds the object for a file PostgreSQL asks for (`000000010000000000000004`,
    /// `00000002.history`), whatever its compression; nil when the archive has none. A
    /// `.partial` segment is never handed out for a full one.
    public func locate(_ name: String) throws -> RestorePlan.WALFile? {
        let prefix: String
        if let seg = WALSegment(name: name) {
            prefix = layout.key(for: .walSegment(server: server, segment: seg, compression: nil))
        } else if name.count == 16, name.hasSuffix(".history"), let tli = UInt32(name.prefix(8), radix: 16) {
            prefix = layout.key(for: .timelineHistory(server: server, timeline: tli, compression: nil))
        } else {
            throw LocalError("'\(name)' is not a WAL segment or timeline history file name")
        }
        var found: [StoredObject] = []
        try storage.list(prefix: prefix, delimiter: nil, startAfter: nil) { objects, _ in found += objects }
        let candidates = found.compactMap { o -> RestorePlan.WALFile? in
            switch layout.parse(o.key) {
            case .walSegment(_, _, let c)?, .timelineHistory(_, _, let c)?:
                return .init(name: name, key: o.key, size: o.size, compression: c?.rawValue)
            default:
                return nil
            }
        }
        // Prefer the plain object when both exist (a re-archived segment).
        return candidates.min { ($0.compression ?? "") < ($1.compression ?? "") }
    }

    /// Downloads `file` to `path` (decompressed), through a temporary file renamed into place.
    /// Returns the bytes read from the store.
    @discardableResult
    public func fetch(_ file: RestorePlan.WALFile, to path: String, owner: RunAs? = nil) throws -> Int64 {
        let tmp = path + ".drctl-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw LocalError("cannot create \(tmp): \(String(cString: strerror(errno)))") }
        var closed = false
        defer { if !closed { close(fd) }; unlink(tmp) }
        if let owner { fchown(fd, owner.uid, owner.gid) }
        var written: Int64 = 0, read: Int64 = 0
        let limit: Int64 = 1 << 30
        switch file.compression {
        case nil:
            try storage.get(file.key, range: nil) { chunk in
                try writeAll(fd, chunk, path: tmp)
                written += Int64(chunk.count)
                read += Int64(chunk.count)
            }
        case Compression.gzip.rawValue?:
            let gz = try GzipStream(limit: limit)
            try storage.get(file.key, range: nil) { chunk in
                read += Int64(chunk.count)
                try gz.feed(chunk) { out in
                    try writeAll(fd, out, path: tmp)
                    written += Int64(out.count)
                }
            }
            try gz.finish()
        case let c?:
            throw LocalError("\(file.key): \(c)-compressed WAL is not supported (plain and gzip are)")
        }
        if WALSegment(name: file.name) != nil, written & (written - 1) != 0 || written < 1 << 20 {
            throw LocalError("\(file.key) holds \(written) bytes after decompression: not a whole WAL segment")
        }
        close(fd)
        closed = true
        guard rename(tmp, path) == 0 else { throw LocalError("rename \(tmp) to \(path): \(String(cString: strerror(errno)))") }
        return read
    }
}

/// Read-ahead of WAL into a spool directory, so replay never waits on a round trip: segments
/// are fetched in replay order by a few workers, at most `window` ahead of what PostgreSQL has
/// taken. `drctl wal-restore` moves a spooled segment into place, or waits for one in flight.
///
/// Spool protocol (one directory, one restore): `<name>` is a complete segment; `<name>.error`
/// says its fetch failed (restore_command then fetches it itself); `<name>.taken` that it was
/// handed to PostgreSQL; `plan` lists the names
/// the prefetcher will fetch; `prefetcher.pid` names the live process doing it.
public final class WALPrefetcher: @unchecked Sendable {
    public let source: WALSource
    public let files: [RestorePlan.WALFile]
    public let spool: String
    public let window: Int
    public let workers: Int
    let owner: RunAs?
    private let lock = NSCondition()
    private var next = 0
    private var inFlight = 0
    private var done: [String] = []
    private var stopped = false
    private var running = 0
    public private(set) var bytes: Int64 = 0
    public private(set) var fetched = 0
    private var failures: [(name: String, error: String)] = []

    /// The first segment that could not be fetched, and why: what stopped a recovery that
    /// PostgreSQL itself reports only as a missing checkpoint or WAL record.
    public var firstFailure: (name: String, error: String)? { lock.withLock { failures.min { $0.name < $1.name } } }

    public init(source: WALSource, files: [RestorePlan.WALFile], spool: String, window: Int = 16, workers: Int = 4, owner: RunAs?) {
        self.source = source
        self.files = files
        self.spool = spool
        self.window = max(1, window)
        self.workers = max(1, workers)
        self.owner = owner
    }

    public func start() throws {
        try (files.map(\.name).joined(separator: "\n") + "\n").write(toFile: spool + "/plan", atomically: true, encoding: .utf8)
        try "\(getpid())\n".write(toFile: spool + "/prefetcher.pid", atomically: true, encoding: .utf8)
        if let owner { try owner.chownTree(spool) }
        lock.withLock { running = workers }
        for _ in 0..<workers {
            Thread.detachNewThread { [self] in work() }
        }
    }

    /// Stops fetching and waits for the workers to finish their current file.
    public func stop() {
        lock.withLock {
            stopped = true
            lock.broadcast()
        }
        lock.withLock { while running > 0 { _ = lock.wait(until: Date().addingTimeInterval(0.05)) } }
        unlink(spool + "/prefetcher.pid")
    }

    /// Spooled files PostgreSQL has not taken yet.
    private func waiting() -> Int {
        done.removeAll { access(spool + "/" + $0, F_OK) != 0 }
        return done.count
    }

    private func work() {
        defer { lock.withLock { running -= 1; lock.broadcast() } }
        while true {
            var index = -1
            lock.withLock {
                while !stopped && next < files.count && waiting() + inFlight >= window {
                    _ = lock.wait(until: Date().addingTimeInterval(0.01))
                }
                if !stopped && next < files.count {
                    index = next
                    next += 1
                    inFlight += 1
                }
            }
            guard index >= 0, !Cleanup.shared.isAborting else { return }
            let f = files[index]
            let path = spool + "/" + f.name
            do {
                let n = try source.fetch(f, to: path, owner: owner)
                lock.withLock { bytes += n; fetched += 1; done.append(f.name); inFlight -= 1; lock.broadcast() }
            } catch {
                try? "\(error)\n".write(toFile: path + ".error", atomically: true, encoding: .utf8)
                lock.withLock { failures.append((f.name, "\(error)")); inFlight -= 1; lock.broadcast() }
            }
        }
    }
}

/// restore_command's side of the spool (runs inside `drctl wal-restore`).
public enum WALSpool {
    public enum Outcome { case moved, failed(String), notPlanned }

    /// Moves `name` from the spool to `target` if it is there or on its way (waiting for the
    /// prefetcher while it lives); `notPlanned` when restore_command must fetch it itself.
    public static func take(_ name: String, spool: String, target: String, timeout: TimeInterval = 600) -> Outcome {
        let path = spool + "/" + name
        // `<name>.taken`: handed out once already (recovery re-reads its last segment when it
        // ends); the prefetcher will not bring it again.
        func moved() -> Outcome {
            close(open(path + ".taken", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600))
            return .moved
        }
        if rename(path, target) == 0 { return moved() }
        guard access(path + ".taken", F_OK) != 0,
              let plan = try? String(contentsOfFile: spool + "/plan", encoding: .utf8),
              plan.split(separator: "\n").contains(Substring(name)) else { return .notPlanned }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if rename(path, target) == 0 { return moved() }
            if let err = try? String(contentsOfFile: path + ".error", encoding: .utf8) { return .failed(err) }
            guard let pidText = try? String(contentsOfFile: spool + "/prefetcher.pid", encoding: .utf8),
                  let pid = pid_t(pidText.trimmingCharacters(in: .whitespacesAndNewlines)), kill(pid, 0) == 0 || errno == EPERM else {
                return rename(path, target) == 0 ? moved() : .notPlanned
            }
            usleep(2_000)
        }
        return .notPlanned
    }
}

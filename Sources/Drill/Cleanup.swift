import Foundation
import Support

/// Everything a restore has put on this host that must go when it ends: process groups to
/// kill and directories to remove. Cleanup runs on the normal path and, through the signal
/// handlers, on Ctrl-C, SIGTERM and SIGHUP, so a drill never leaves a server or a directory behind.
public final class Cleanup: @unchecked Sendable {
    public static let shared = Cleanup()
    private let lock = NSLock()
    private var groups: [pid_t] = []
    private var dirs: [String] = []
    private var actions: [(id: Int, run: @Sendable () -> Void)] = []
    private var nextID = 0
    private var first: [@Sendable () -> Void] = []
    private var last: [@Sendable () -> Void] = []
    private var sources: [DispatchSourceSignal] = []
    private var installed = false
    private var aborting = false
    /// `drctl serve`: SIGTERM is how Kubernetes stops it, so after the cleanup it exits 0.
    public var exitZeroOnTerm = false

    /// Set once a signal asked drctl to stop: long loops check it and stop writing, so nothing
    /// recreates a directory the cleanup is removing.
    public var isAborting: Bool { lock.withLock { aborting } }

    public func addProcessGroup(_ pgid: pid_t) { lock.withLock { groups.append(pgid) } }
    public func removeProcessGroup(_ pgid: pid_t) { lock.withLock { groups.removeAll { $0 == pgid } } }
    public func addDirectory(_ path: String) { lock.withLock { dirs.append(path) } }
    /// Something else to undo on a signal (e.g. delete a drill namespace); the id removes it
    /// once undone on the normal path, so a long-running service does not pile them up.
    @discardableResult
    public func addAction(_ action: @escaping @Sendable () -> Void) -> Int {
        lock.withLock { nextID += 1; actions.append((nextID, action)); return nextID }
    }
    public func removeAction(_ id: Int) { lock.withLock { actions.removeAll { $0.id == id } } }
    /// Runs before every other action (e.g. stop leading, so nothing new starts) and after them
    /// all (e.g. hand the lease back once the drill is torn down), on every cleanup.
    public func addFirstAction(_ action: @escaping @Sendable () -> Void) { lock.withLock { first.append(action) } }
    public func addLastAction(_ action: @escaping @Sendable () -> Void) { lock.withLock { last.append(action) } }

    /// Registers a directory just created, unless a signal is already being handled (then the
    /// caller removes it and stops): no directory is created that the cleanup would miss.
    public func register(directory path: String) throws {
        try lock.withLock {
            guard !aborting else { throw LocalError("interrupted") }
            dirs.append(path)
        }
    }
    public func removeDirectory(_ path: String) { lock.withLock { dirs.removeAll { $0 == path } } }

    /// Handle SIGINT, SIGTERM and SIGHUP: clean up, then exit 128+signal.
    public func installSignalHandlers() {
        lock.lock(); defer { lock.unlock() }
        guard !installed else { return }
        installed = true
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { [self] in
                lock.withLock { aborting = true }
                for action in lock.withLock({ self.first }) { action() }
                FileHandle.standardError.write(Data("\ndrctl: \(sig == SIGINT ? "interrupted" : "terminated"); stopping PostgreSQL and removing the scratch directory\n".utf8))
                let groups = lock.withLock { self.groups }
                for g in groups { Self.killGroup(g) }
                usleep(200_000)   // let the restore notice and stop writing
                let dirs = lock.withLock { self.dirs }
                runAll()
                usleep(100_000)   // and sweep once more after anything that was mid-write
                for d in dirs { Self.removeTree(d) }
                _exit(sig == SIGTERM && exitZeroOnTerm ? 0 : 128 + sig)
            }
            s.resume()
            sources.append(s)
        }
    }

    /// Called by the main thread when its work ended early: if a signal is being handled, wait
    /// for the handler to finish the cleanup and exit, instead of racing it.
    public func parkIfAborting() {
        guard isAborting else { return }
        while true { sleep(60) }
    }

    /// Kills every registered process group and removes every registered directory.
    public func runAll() {
        let (f, l) = lock.withLock { (first, last) }
        for action in f { action() }
        let (g, d, a) = lock.withLock { (groups, dirs, actions) }
        for action in a { action.run() }
        for pgid in g { Self.killGroup(pgid) }
        for dir in d { Self.removeTree(dir) }
        lock.withLock { groups.removeAll(); dirs.removeAll(); actions.removeAll() }
        for action in l { action() }
    }

    /// SIGQUIT (PostgreSQL's immediate shutdown) to the group, then SIGKILL to whatever is left.
    public static func killGroup(_ pgid: pid_t) {
        guard pgid > 0 else { return }
        kill(-pgid, SIGQUIT)
        for _ in 0..<50 {
            if kill(-pgid, 0) != 0 { return }
            // Reap the leader if it is our child, so the group can vanish.
            var st: Int32 = 0
            _ = waitpid(pgid, &st, WNOHANG)
            usleep(20_000)
        }
        kill(-pgid, SIGKILL)
        var st: Int32 = 0
        _ = waitpid(pgid, &st, 0)
    }

    /// rm -rf without following links (FileTree), repeated briefly: a writer that was mid-file
    /// may recreate an entry once.
    public static func removeTree(_ path: String) {
        for attempt in 0..<5 {
            if FileTree.remove(path) { return }
            usleep(useconds_t(20_000 * (attempt + 1)))
        }
    }
}

import Foundation

/// Starting a child with posix_spawn, for drctl and its tests alike: an argument vector, never a
/// shell, and a child that inherits nothing it should not.
public enum Spawn {
    /// Starts `program` with `env`; stdin is /dev/null, stdout and stderr go to `output` (appended
    /// to, or truncated). It inherits no descriptor beyond 0–2 and no blocked or ignored signal.
    /// With `newGroup` it leads a process group of its own, so everything it starts can be
    /// signalled at once.
    public static func start(_ program: String, _ args: [String], env: [String: String], output: String, append: Bool,
                             newGroup: Bool) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        closeInheritedDescriptors(&actions)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var flags = defaultSignals(&attr)
        if newGroup {
            flags |= Int16(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attr, 0)
        }
        posix_spawnattr_setflags(&attr, flags)
        let argv = ([program] + args).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, program, &actions, &attr, argv, envp)
        guard rc == 0 else { throw LocalError("cannot run \(program): \(String(cString: strerror(rc)))") }
        return pid
    }

    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc >= 2.34's posix_spawn_file_actions_addclosefrom_np, which Swift's Glibc module does
    /// not export; looked up once.
    nonisolated(unsafe) private static let closeFrom: CloseFrom? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(sym, to: CloseFrom.self)
    }()

    /// Closes every descriptor beyond 0–2 in the child. A child that outlives its parent (a
    /// PostgreSQL server, a daemon) would otherwise keep whatever another thread had open at that
    /// moment: the write end of a pipe then never reaches EOF, and whoever waits for it waits forever.
    /// Without the glibc call, every descriptor open now is closed one by one (a descriptor closed
    /// before the spawn is ignored by glibc).
    static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        if let closeFrom, closeFrom(&actions, 3) == 0 { return }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap { Int32($0) } ?? []
        for fd in open where fd > 2 { posix_spawn_file_actions_addclose(&actions, fd) }
    }

    /// Signals restored to their defaults and none blocked in the child: a child started from a
    /// thread that blocks SIGTERM (or a process that ignores SIGPIPE) would inherit that, and then
    /// could not be stopped by the signal meant to stop it.
    static func defaultSignals(_ attr: inout posix_spawnattr_t) -> Int16 {
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attr, &all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        return Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)
    }
}

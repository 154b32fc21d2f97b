import Foundation

/// What every child drctl (and its tests) starts gets set up with, in one place.
public enum SpawnActions {
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
    public static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        if let closeFrom, closeFrom(&actions, 3) == 0 { return }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap { Int32($0) } ?? []
        for fd in open where fd > 2 { posix_spawn_file_actions_addclose(&actions, fd) }
    }

    /// Signals restored to their defaults and none blocked in the child: a child started from a
    /// thread that blocks SIGTERM (or a process that ignores SIGPIPE) would inherit that, and then
    /// could not be stopped by the signal meant to stop it.
    public static func defaultSignals(_ attr: inout posix_spawnattr_t) -> Int16 {
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attr, &all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        return Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)
    }
}

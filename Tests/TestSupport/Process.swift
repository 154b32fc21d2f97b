import Foundation
import Support

/// The package root, found from this file's location.
public let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

public struct FixtureError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// Runs a program to completion; returns its exit status and combined output. Uses
/// posix_spawn and waitpid directly: Foundation's Process can miss the exit of a child whose
/// own children daemonize (as Ceph's do). A program still running after `timeout` seconds is
/// killed and the run fails, naming it.
@discardableResult
public func run(_ program: String, _ args: [String], env: [String: String]? = nil, timeout: TimeInterval = 600) throws -> (Int32, String) {
    let outPath = tempPath("out")
    defer { unlink(outPath) }
    let status = try reap(try spawn(program, args, env: env, output: outPath), within: timeout)
    let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    return (exitCode(status), output)
}

/// The exit status of a raw wait status (128 + the signal for a killed process).
public func exitCode(_ status: Int32) -> Int32 {
    status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

public func tempPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("drctl-\(UUID().uuidString.prefix(8))-\(name)").path
}

/// The drctl executable built beside the test bundle.
public var drctlBinary: String { builtProgram("drctl") }

/// An executable of this package built beside the test bundle.
public func builtProgram(_ name: String) -> String {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let candidates = [dir.appendingPathComponent(name).path, packageRoot.appendingPathComponent(".build/debug/\(name)").path]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
}

/// Starts a program without waiting, its standard output and error going to `output` (default:
/// discarded); returns its pid. It inherits no descriptor beyond 0–2 and no blocked or ignored
/// signal: a daemon it starts holds none of this process's pipes open, and SIGTERM stops it.
/// With `newGroup` it leads a process group of its own, which `stop` signals as a whole.
public func spawn(_ program: String, _ args: [String], env: [String: String]? = nil, output: String = "/dev/null",
                  newGroup: Bool = false) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    SpawnActions.closeInheritedDescriptors(&actions)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var flags = SpawnActions.defaultSignals(&attr)
    if newGroup {
        flags |= Int16(POSIX_SPAWN_SETPGROUP)
        posix_spawnattr_setpgroup(&attr, 0)
    }
    posix_spawnattr_setflags(&attr, flags)
    let argv = ([program] + args).map { strdup($0) } + [nil]
    let environment = (env ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { argv.forEach { free($0) }; environment.forEach { free($0) } }
    var pid = pid_t()
    let rc = posix_spawn(&pid, program, &actions, &attr, argv, environment)
    guard rc == 0 else { throw FixtureError(description: "cannot run \(program): \(String(cString: strerror(rc)))") }
    return pid
}

/// A process's command line, for naming it in a failure.
public func commandLine(_ pid: pid_t) -> String {
    guard let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !raw.isEmpty else { return "pid \(pid)" }
    return raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ").prefix(300) + " (pid \(pid))"
}

/// Waits for a spawned process, at most `seconds`; returns its raw wait status. A process still
/// running then is killed (with its group, when it leads one) and the wait fails, naming `what`
/// (default: its command line): a test never waits forever.
@discardableResult
public func reap(_ pid: pid_t, within seconds: TimeInterval = 300, _ what: String? = nil) throws -> Int32 {
    let deadline = Date().addingTimeInterval(seconds)
    var status: Int32 = 0
    var delay: useconds_t = 1_000
    while true {
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { return status }
        if r < 0 && errno != EINTR { throw FixtureError(description: "waitpid \(pid): \(String(cString: strerror(errno)))") }
        if Date() >= deadline {
            let name = what ?? commandLine(pid)
            if getpgid(pid) == pid { kill(-pid, SIGKILL) }
            kill(pid, SIGKILL)
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            throw FixtureError(description: "still running after \(Int(seconds)) s, killed: \(name)")
        }
        usleep(delay)
        delay = min(delay * 2, 50_000)
    }
}

/// Stops a helper the test started: SIGTERM (to its group, when it leads one), SIGKILL after
/// `grace` seconds, reaped either way. Never waits on a pipe reaching EOF: whatever else holds
/// its write end (a daemon started meanwhile) would hold the wait too.
public func stop(_ pid: pid_t, grace: TimeInterval = 5) {
    guard pid > 0 else { return }
    if getpgid(pid) == pid { kill(-pid, SIGTERM) }
    kill(pid, SIGTERM)
    _ = try? reap(pid, within: grace)
}

/// Polls `done` up to `attempts` times, `every` microseconds apart, and stops as soon as it
/// holds; returns whether it did.
@discardableResult
public func waitUntil(_ attempts: Int, every: useconds_t, _ done: () throws -> Bool) rethrows -> Bool {
    for _ in 0..<attempts {
        if try done() { return true }
        usleep(every)
    }
    return try done()
}

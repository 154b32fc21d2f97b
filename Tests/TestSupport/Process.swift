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

/// A record key file of this test run (`drctl-record-key ID HEX`, 0600), made once.
public let testRecordKeyFile: String = {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-test-record-key-\(getpid())").path
    var g = SystemRandomNumberGenerator()
    let hex = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    precondition(fd >= 0, "cannot create \(path)")
    let line = Array("drctl-record-key test-\(getpid()) \(hex)\n".utf8)
    _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
    atexit { unlink(FileManager.default.temporaryDirectory.appendingPathComponent("drctl-test-record-key-\(getpid())").path) }
    return path
}()

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
    var env = env ?? ProcessInfo.processInfo.environment
    // Every drctl the tests run seals its records with the run's key, unless a test names
    // another (or "" for none).
    if env["DRCTL_RECORD_KEY_FILE"] == nil { env["DRCTL_RECORD_KEY_FILE"] = testRecordKeyFile }
    do {
        return try Spawn.start(program, args, env: env, output: output, append: false, newGroup: newGroup)
    } catch let e as LocalError {
        throw FixtureError(description: e.description)
    }
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

import Foundation

/// The package root, found from this file's location.
public let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

public struct FixtureError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// Runs a program to completion; returns its exit status and combined output. Uses
/// posix_spawn and waitpid directly: Foundation's Process can miss the exit of a child whose
/// own children daemonize (as Ceph's do).
@discardableResult
public func run(_ program: String, _ args: [String], env: [String: String]? = nil) throws -> (Int32, String) {
    let outPath = tempPath("out")
    defer { unlink(outPath) }
    let status = reap(try spawn(program, args, env: env, output: outPath))
    let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let exited = status & 0x7f == 0
    return (exited ? (status >> 8) & 0xff : 128 + (status & 0x7f), output)
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
/// discarded); returns its pid.
public func spawn(_ program: String, _ args: [String], env: [String: String]? = nil, output: String = "/dev/null") throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let argv = ([program] + args).map { strdup($0) } + [nil]
    let environment = (env ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { argv.forEach { free($0) }; environment.forEach { free($0) } }
    var pid = pid_t()
    let rc = posix_spawn(&pid, program, &actions, nil, argv, environment)
    guard rc == 0 else { throw FixtureError(description: "cannot run \(program): \(String(cString: strerror(rc)))") }
    return pid
}

/// Waits for a spawned process; returns its raw wait status.
@discardableResult
public func reap(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return status
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

import Foundation
import Support

/// Child processes with posix_spawn: an argument vector, never a shell. Foundation's Process
/// misses the exit of children whose own children outlive them, which PostgreSQL's do.
public enum Subprocess {
    /// Starts `program`; stdout and stderr go to `output` (appended). With `newGroup` the child
    /// leads a process group of its own, so everything it starts can be signalled at once.
    public static func spawn(_ program: String, _ args: [String], env: [String: String], output: String = "/dev/null",
                             newGroup: Bool = false) throws -> pid_t {
        try Spawn.start(program, args, env: env, output: output, append: true, newGroup: newGroup)
    }

    /// The exit status of a finished child, or nil while it runs.
    public static func poll(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { return decode(status) }
        if r < 0 && errno == ECHILD { return -1 }
        return nil
    }

    @discardableResult
    public static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        return decode(status)
    }

    static func decode(_ status: Int32) -> Int32 {
        status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// Runs to completion; returns the exit status and the combined output.
    public static func run(_ program: String, _ args: [String], env: [String: String]) throws -> (status: Int32, output: String) {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-run-\(getpid())-\(UUID().uuidString.prefix(8))").path
        let fd = open(out, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw LocalError("cannot create \(out): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let pid: pid_t
        do { pid = try spawn(program, args, env: env, output: out) } catch { unlink(out); throw error }
        // posix_spawn returns once the child has opened the file: with the name gone now, a drctl
        // killed while the child runs leaves nothing behind in the temporary directory.
        unlink(out)
        let status = wait(pid)
        var output: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        var offset: off_t = 0
        while true {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            output += buf[0..<n]
            offset += off_t(n)
        }
        return (status, String(decoding: output, as: UTF8.self))
    }

    /// The absolute path of this executable (restore_command must name it exactly).
    public static var currentExecutable: String {
        if let path = ProcFS.executablePath() { return path }
        return URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
    }

    /// The first of `candidates` that exists and can be executed.
    public static func find(_ candidates: [String]) -> String? {
        candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}

/// A user the restored PostgreSQL runs as when drctl runs as root (PostgreSQL refuses root).
public struct RunAs: Sendable {
    public var user: String
    public var uid: uid_t
    public var gid: gid_t

    public init(user: String) throws {
        guard let pw = getpwnam(user) else {
            throw LocalError("user '\(user)' does not exist: PostgreSQL cannot run as root; create it or pass --run-as USER")
        }
        self.user = user
        uid = pw.pointee.pw_uid
        gid = pw.pointee.pw_gid
    }

    /// The user to run as: none when not root; else `user`.
    public static func forCurrentProcess(user: String) throws -> RunAs? {
        geteuid() == 0 ? try RunAs(user: user) : nil
    }

    /// The first directory on `path` this user cannot enter, or the file itself when it cannot
    /// execute it, judged by owner, group and other bits (root's view of the tree); nil when both hold.
    public func cannotReach(_ path: String) -> String? {
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            var st = stat()
            guard stat(prefix, &st) == 0 else { return prefix }
            // Search on a directory, execute on the file: the same x bit of owner, group or other.
            let bit = st.st_uid == uid ? S_IXUSR : st.st_gid == gid ? S_IXGRP : S_IXOTH
            if st.st_mode & bit == 0 { return prefix }
        }
        return nil
    }

    /// `program args` wrapped so it runs as this user (runuser keeps the environment).
    public func wrap(_ program: String, _ args: [String]) throws -> (String, [String]) {
        guard let runuser = Subprocess.find(["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]) else {
            throw LocalError("runuser not found: it is needed to run PostgreSQL as \(user) (util-linux)")
        }
        return (runuser, ["-u", user, "--", program] + args)
    }

    /// Gives a file tree to this user, never following a link in it.
    public func chownTree(_ root: String) throws {
        try FileTree.chown(root, uid: uid, gid: gid)
    }
}

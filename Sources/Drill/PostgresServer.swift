import Foundation
import Support

/// PostgreSQL server binaries of one major version.
public struct PostgresBinaries: Sendable {
    public let bin: String
    public let major: Int

    /// `/usr/lib/postgresql/<major>/bin` (Debian, Ubuntu), `/usr/pgsql-<major>/bin` (PGDG RPMs),
    /// or `override`; the version `postgres --version` reports must match.
    public static func find(major: Int, override: String?) throws -> PostgresBinaries {
        let candidates = override.map { [$0] } ?? ["/usr/lib/postgresql/\(major)/bin", "/usr/pgsql-\(major)/bin"]
        guard let bin = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0 + "/postgres") }) else {
            throw LocalError("the backup is of PostgreSQL \(major), and no PostgreSQL \(major) server was found in \(candidates.joined(separator: " or ")) (install postgresql-\(major), or pass --pg-bin DIR)")
        }
        let (st, out) = try Subprocess.run(bin + "/postgres", ["--version"], env: ["PATH": "/usr/bin:/bin"])
        // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        let found = out.split(separator: " ").dropFirst(2).first.flatMap { Int($0.split(separator: ".").first ?? "") }
        guard st == 0, let found else { throw LocalError("\(bin)/postgres --version failed: \(out)") }
        guard found == major else {
            throw LocalError("the backup is of PostgreSQL \(major), but \(bin)/postgres is PostgreSQL \(found): WAL and data files are not compatible across major versions")
        }
        for tool in ["psql"] where !FileManager.default.isExecutableFile(atPath: "\(bin)/\(tool)") {
            throw LocalError("\(bin)/\(tool) not found (install postgresql-client-\(major))")
        }
        return PostgresBinaries(bin: bin, major: major)
    }

    public init(bin: String, major: Int) {
        self.bin = bin
        self.major = major
    }
}

/// A PostgreSQL server recovering a restored data directory, started with drctl's own
/// configuration file: the backup's postgresql.conf (which for CNPG points at certificates,
/// preload libraries and, above all, an archive_command writing into the production archive)
/// stays in the data directory untouched and unused. Its postgresql.auto.conf, which PostgreSQL
/// would read anyway, is set aside before the first start (HostRestore), and the settings that
/// matter are given on the command line too, where no file can override them.
public final class RecoveryServer: SQLSession, @unchecked Sendable {
    public let binaries: PostgresBinaries
    public let dataDir: String
    public let configDir: String
    public let socketDir: String
    public let port: Int
    public let logFile: String
    public let runAs: RunAs?
    public let user: String
    /// Libraries the policy allows the server to preload (names in $libdir).
    public let preload: [String]
    public private(set) var pid: pid_t = 0
    /// The restore_command of the last configuration written (nil after recovery).
    private var restoreCommand: String?
    /// Replay tuning (BackupConfiguration.replaySettings), on the command line after the safety settings.
    public var tuning: [(name: String, value: String)] = []

    public init(binaries: PostgresBinaries, dataDir: String, configDir: String, socketDir: String, port: Int, logFile: String,
                runAs: RunAs?, user: String, preload: [String] = []) {
        self.binaries = binaries
        self.dataDir = dataDir
        self.configDir = configDir
        self.socketDir = socketDir
        self.port = port
        self.logFile = logFile
        self.runAs = runAs
        self.user = user
        self.preload = preload
    }

    public var configFile: String { configDir + "/drctl-postgresql.conf" }
    public var hbaFile: String { configDir + "/drctl-pg_hba.conf" }
    public var identFile: String { configDir + "/drctl-pg_ident.conf" }

    /// Quotes a value for postgresql.conf.
    static func conf(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }
    /// Quotes one word for the shell PostgreSQL runs restore_command with.
    public static func shellWord(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// A restore_command running `argv` then the segment's name and destination: each word quoted
    /// for the shell, and `%` doubled, since PostgreSQL replaces `%f`, `%p`, `%r` and `%%` in it.
    public static func restoreCommand(_ argv: [String]) -> String {
        argv.map { shellWord($0).replacingOccurrences(of: "%", with: "%%") }.joined(separator: " ") + " %f %p"
    }

    /// Writes the configuration: loopback and a private socket only, no archiving, no
    /// replication, and the recovery settings when `restoreCommand` is given.
    public func writeConfig(restoreCommand: String?, target: RecoveryTarget?, allowTCP: Bool) throws {
        self.restoreCommand = restoreCommand
        var lines = ["# Written by drctl for a restored data directory. The backup's own postgresql.conf is not read."]
        lines += safetySettings.map { "\($0.name) = \(Self.conf($0.value))" }
        lines += [
            "wal_level = replica",
            "shared_buffers = 128MB",
            "max_connections = 20",
            "timezone = 'UTC'",
            "log_timezone = 'UTC'",
            "log_line_prefix = '%m [%p] '",
        ]
        if restoreCommand != nil {
            lines += ["recovery_target_timeline = 'latest'", "recovery_target_action = 'promote'"]
            if case .time(let t)? = target {
                lines += ["recovery_target_time = \(Self.conf(TargetTime.postgres(t)))", "recovery_target_inclusive = on"]
            }
            if case .backup? = target { lines.append("recovery_target = 'immediate'") }
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: configFile, atomically: true, encoding: .utf8)
        // Local connections through the 0700 socket directory only; TCP from loopback needs the
        // restored roles' passwords (and is refused during a drill).
        let hba = ["local all all trust", "host all all 127.0.0.1/32 \(allowTCP ? "scram-sha-256" : "reject")", "host all all ::1/128 reject"]
        try (hba.joined(separator: "\n") + "\n").write(toFile: hbaFile, atomically: true, encoding: .utf8)
        try "".write(toFile: identFile, atomically: true, encoding: .utf8)
        if let runAs { for f in [configFile, hbaFile, identFile] { lchown(f, runAs.uid, runAs.gid) } }
    }

    /// drctl's settings for this server (BackupConfiguration), with the last restore_command written.
    var safetySettings: [(name: String, value: String)] {
        BackupConfiguration.safetySettings(major: binaries.major, port: port, socketDirectory: socketDir, hbaFile: hbaFile,
                                           identFile: identFile, restoreCommand: restoreCommand, preload: preload)
    }

    /// Starts `postgres` in a process group of its own (registered for cleanup).
    public func start(environment: [String: String]) throws {
        var (program, args) = (binaries.bin + "/postgres", ["-D", dataDir, "-c", "config_file=\(configFile)"]
            + BackupConfiguration.commandLine(safetySettings + tuning))
        if let runAs { (program, args) = try runAs.wrap(program, args) }
        if !FileManager.default.fileExists(atPath: logFile) {
            FileManager.default.createFile(atPath: logFile, contents: nil)
            if let runAs { lchown(logFile, runAs.uid, runAs.gid) }
        }
        pid = try Subprocess.spawn(program, args, env: environment, output: logFile, newGroup: true)
        Cleanup.shared.addProcessGroup(pid)
    }

    /// Waits until the log written after byte `logAfter` says the server accepts connections;
    /// an exit or the deadline is an error naming what the log says.
    public func waitReady(logAfter: Int, deadline: Date) throws {
        while true {
            let recent = log().utf8.dropFirst(logAfter)
            if String(decoding: recent, as: UTF8.self).contains("database system is ready to accept connections") { return }
            if let st = exited() { throw RecoveryError("the restored server stopped while starting (exit \(st)): \(logProblem())") }
            if Date() > deadline { throw RecoveryError("the restored server did not start in time: \(logProblem())") }
            usleep(50_000)
        }
    }

    /// The server's exit status if it has stopped.
    public func exited() -> Int32? { pid > 0 ? Subprocess.poll(pid) : -1 }

    /// Runs SQL through psql over the private socket; returns the unaligned, tuples-only output.
    public func query(_ sql: String, database: String = "postgres") throws -> String {
        try session.query(sql, database: database)
    }

    /// psql over the private socket as the restored cluster's superuser.
    var session: PsqlSession { PsqlSession(psql: binaries.bin + "/psql", host: socketDir, port: port, user: user) }

    /// A session as pg_read_all_data (PostgreSQL 14+), not as the superuser, for reading what
    /// drctl itself wrote into production (the heartbeat): a view or function in the restored
    /// data (production's owner's, or a forged backup's) runs with no more than reading rights.
    public var reader: any SQLSession {
        var session = self.session
        if binaries.major >= 14 { session.sessionOptions = PsqlSession.options(statementTimeout: session.timeout) + " -c role=pg_read_all_data" }
        return session
    }

    /// A checkpoint as the restored cluster's superuser (a real restore, before it is handed
    /// over: everything on disk, nothing left to replay after a crash).
    public func checkpoint() throws {
        _ = try query("checkpoint")
    }

    /// Stops the server: `fast` (clean shutdown, for a data directory that is kept) or
    /// `immediate`; waits for it to exit.
    public func stop(mode: String = "fast") {
        guard pid > 0 else { return }
        if Subprocess.poll(pid) == nil {
            // Signal the postmaster itself (its pid heads postmaster.pid), not runuser in front of it.
            let pm = (try? String(contentsOfFile: dataDir + "/postmaster.pid", encoding: .utf8))
                .flatMap { $0.split(separator: "\n").first.flatMap { pid_t($0) } } ?? pid
            kill(pm, mode == "fast" ? SIGINT : SIGQUIT)
            let deadline = Date().addingTimeInterval(60)
            while Subprocess.poll(pid) == nil && Date() < deadline { usleep(20_000) }
        }
        Cleanup.killGroup(pid)
        Cleanup.shared.removeProcessGroup(pid)
        pid = 0
    }

    /// The server log so far.
    public func log() -> String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    /// The last lines of the log that say what went wrong (FATAL/PANIC/ERROR), else its tail.
    public func logProblem() -> String {
        let lines = log().split(separator: "\n")
        let bad = lines.filter { $0.contains("FATAL:") || $0.contains("PANIC:") }
        let pick = bad.isEmpty ? Array(lines.suffix(5)) : Array(bad.suffix(3))
        return pick.map { l in
            // Drop the timestamp/pid prefix.
            if let r = l.range(of: "] ") { return String(l[r.upperBound...]) }
            return String(l)
        }.joined(separator: "; ")
    }
}

/// A free TCP port on 127.0.0.1.
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw LocalError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard r == 0 else { throw LocalError("bind: \(String(cString: strerror(errno)))") }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Whether a TCP connection to an IPv4 address opens within `timeout` seconds: whether drctl,
/// where it runs, can reach a cluster Service directly.
public func tcpReachable(_ ip: String, port: Int, timeout: Double) -> Bool {
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    guard inet_pton(AF_INET, ip, &addr.sin_addr) == 1, let p = UInt16(exactly: port) else { return false }
    addr.sin_port = p.bigEndian
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    if r == 0 { return true }
    guard errno == EINPROGRESS else { return false }
    var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
    guard poll(&pfd, 1, Int32(timeout * 1000)) == 1 else { return false }
    var err: Int32 = 0
    var len = socklen_t(MemoryLayout<Int32>.size)
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
    return err == 0
}

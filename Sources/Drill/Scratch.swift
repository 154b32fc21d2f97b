import Foundation
import Support

/// A scratch directory for one restore: `<base>/drctl-<kind>-<name>-<UTC stamp>-<pid>`, owned
/// by drctl's own user and never writable by anyone else (0700, or 0711 so that PostgreSQL's
/// user can reach the subdirectories given to it), with a marker holding drctl's owner id; it
/// is registered for cleanup.
public struct ScratchDirectory: Sendable {
    public let path: String

    /// The marker file in every directory drctl creates for a restore.
    public static let markerName = ".drctl-scratch"

    public init(base: String, kind: String, name: String, runAs: RunAs?, owner: String, serving dataDirectory: String? = nil) throws {
        let stamp = Self.stamp(Date())
        let safe = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" })
        path = (base as NSString).appendingPathComponent("drctl-\(kind)-\(safe)-\(stamp)-\(getpid())")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        guard mkdir(path, 0o700) == 0 else { throw LocalError("cannot create scratch directory \(path): \(String(cString: strerror(errno)))") }
        do {
            try Cleanup.shared.register(directory: path)
        } catch {
            rmdir(path)
            throw error
        }
        try Self.mark(path, owner: owner, serving: dataDirectory)
        if runAs != nil { chmod(path, 0o711) }
    }

    /// Writes the marker: the owner id, and the data directory of a server whose socket lives here.
    static func mark(_ dir: String, owner: String, serving dataDirectory: String?) throws {
        try FileTree.createPrivateFile(dir + "/" + markerName, contents: Array((owner + "\n" + (dataDirectory.map { "data=\($0)\n" } ?? "")).utf8))
    }

    /// A subdirectory for PostgreSQL's user (data, spool, socket): 0700 and its own.
    public func subdirectory(_ name: String, runAs: RunAs?) throws -> String {
        let dir = path + "/" + name
        try FileTree.createPrivateDirectory(dir, owner: runAs)
        return dir
    }

    static func stamp(_ d: Date) -> String { RFC3339.formatBasic(d) }

    public func remove() {
        Cleanup.removeTree(path)
        Cleanup.shared.removeDirectory(path)
    }

    /// drctl's owner id: random, made on first use, kept in `stateDirectory/scratch-owner` (0600).
    /// A scratch directory is drctl's only if its marker holds it: nobody else can forge one.
    public static func ownerID(stateDirectory: String) throws -> String {
        let file = stateDirectory + "/scratch-owner"
        func stored() -> String? {
            let id = (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            return id.flatMap { $0.count == 32 && $0.allSatisfy(\.isHexDigit) ? $0 : nil }
        }
        if let id = stored() { return id }
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let id = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let tmp = file + ".\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileTree.createPrivateFile(tmp, contents: Array((id + "\n").utf8), durable: true)
        defer { unlink(tmp) }
        // Two first runs at once: link() keeps whichever came first.
        if link(tmp, file) == 0 { return id }
        if let other = stored() { return other }
        // A damaged file (an empty one after a crash, say): replaced, or every run would fail here.
        guard rename(tmp, file) == 0 else { throw LocalError("cannot replace \(file): \(String(cString: strerror(errno)))") }
        return id
    }

    /// Scratch and socket directories left by a drctl that was killed (SIGKILL, OOM, power):
    /// their names end in the pid of the drctl that made them, which no longer runs. Only
    /// directories drctl itself made are touched (`isOurs`): anyone can create a directory with
    /// such a name in /tmp. A PostgreSQL still running in one is stopped only if its working
    /// directory (its data directory) is the one this directory holds; then the directory goes.
    public static func removeStale(base: String, owner: String, progress: (String) -> Void) {
        let patterns: [(String, String)] = [(base, #"^drctl-(drill|restore|velero)-.+-[0-9]{8}T[0-9]{6}Z-([0-9]+)$"#),
                                            ("/tmp", #"^drctl-sock-([0-9]+)-[A-Za-z0-9]{6}$"#)]
        for (dir, pattern) in patterns {
            guard let re = try? NSRegularExpression(pattern: pattern) else { continue }
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                let ns = name as NSString
                guard let m = re.firstMatch(in: name, range: NSRange(location: 0, length: ns.length)),
                      let pid = pid_t(ns.substring(with: m.range(at: m.numberOfRanges - 1))), !isRunningDrctl(pid) else { continue }
                let path = (dir as NSString).appendingPathComponent(name)
                switch ownership(path, owner: owner) {
                case .notOurs:
                    continue
                case .emptyUnmarked:
                    // Killed between mkdir and the marker: empty, so nothing to stop or lose.
                    rmdir(path)
                case .ours(let serving):
                    stopPostgres(in: path, serving: serving)
                    Cleanup.removeTree(path)
                }
                progress("removed \(path), left by drctl process \(pid), which no longer runs")
            }
        }
    }

    enum Ownership: Equatable { case ours(serving: String?), emptyUnmarked, notOurs }

    /// Whether drctl made `path`: a real directory (not a link) of drctl's user that nobody else
    /// may write, holding a marker of drctl's user with drctl's owner id.
    static func ownership(_ path: String, owner: String) -> Ownership {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == geteuid(), st.st_mode & 0o022 == 0 else { return .notOurs }
        let marker = path + "/" + markerName
        var ms = stat()
        guard lstat(marker, &ms) == 0 else {
            return ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? ["?"]).isEmpty ? .emptyUnmarked : .notOurs
        }
        guard (ms.st_mode & S_IFMT) == S_IFREG, ms.st_uid == geteuid(), ms.st_size < 4096,
              let text = try? String(contentsOfFile: marker, encoding: .utf8) else { return .notOurs }
        let lines = text.split(separator: "\n").map(String.init)
        guard lines.first == owner else { return .notOurs }
        return .ours(serving: lines.first { $0.hasPrefix("data=") }.map { String($0.dropFirst(5)) })
    }

    /// Whether `pid` is a running drctl (not a dead one, nor another program that got its pid).
    static func isRunningDrctl(_ pid: pid_t) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        return (ProcFS.command(pid) ?? "drctl").hasPrefix("drctl")
    }

    /// Stops a PostgreSQL whose postmaster's pid heads `postmaster.pid` in the directory's data
    /// directory or a socket lock file in it, if that process is a postgres whose working
    /// directory (PostgreSQL's is its data directory) is inside `path` or is `serving`.
    static func stopPostgres(in path: String, serving: String?) {
        var files = [path + "/data/postmaster.pid"]
        for dir in [path, path + "/socket", path + "/s"] {
            files += ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix(".s.PGSQL.") && $0.hasSuffix(".lock") }.map { dir + "/" + $0 }
        }
        for file in files {
            var st = stat()
            guard lstat(file, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size < 4096,
                  let text = try? String(contentsOfFile: file, encoding: .utf8),
                  let pid = text.split(separator: "\n").first.flatMap({ pid_t($0.trimmingCharacters(in: .whitespaces)) }), pid > 1 else { continue }
            guard ProcFS.command(pid)?.hasPrefix("postgres") == true, let cwd = ProcFS.workingDirectory(pid),
                  cwd.hasPrefix(path + "/") || (serving.map { cwd == ($0 as NSString).standardizingPath } ?? false) else { continue }
            kill(pid, SIGQUIT)   // immediate shutdown: the scratch copy is thrown away anyway
            for _ in 0..<100 where kill(pid, 0) == 0 { usleep(50_000) }
            if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        }
    }
}

import Foundation
import Support
import Render

/// Where a drill's checks send their SQL: a restored server reached directly, or through the
/// cluster (CheckJobs).
public protocol SQLSession {
    /// Unaligned, tuples-only output of `sql` on `database`; an SQL error throws.
    func query(_ sql: String, database: String) throws -> String
}

/// psql against a socket directory or an address. A password goes in the environment, never
/// on the command line.
public struct PsqlSession: SQLSession {
    public var psql: String
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var timeout: Int
    /// PGOPTIONS: by default a check's (read-only, nothing preloaded); a writer names its own.
    public var sessionOptions: String?

    public init(psql: String, host: String, port: Int, user: String, password: String? = nil, timeout: Int = 120) {
        self.psql = psql
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.timeout = timeout
    }

    public func query(_ sql: String, database: String) throws -> String {
        var env = ["PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "10", "PGOPTIONS": sessionOptions ?? Self.options(statementTimeout: timeout), "PGAPPNAME": "drctl",
                   "LC_ALL": "C.UTF-8"]
        if let password { env["PGPASSWORD"] = password }
        let (st, out) = try Subprocess.run(psql, Self.arguments(host: host, port: port, user: user, database: database, sql: sql), env: env)
        guard st == 0 else { throw LocalError("query on \(database) failed: \(out.trimmingCharacters(in: .whitespacesAndNewlines))") }
        return out.trimmingCharacters(in: .newlines)
    }

    /// The session's settings (PGOPTIONS): the check sessions' own, and a statement timeout.
    public static func options(statementTimeout seconds: Int) -> String {
        DrillManifests.checkSessionOptions + " -c statement_timeout=\(seconds * 1000)"
    }

    /// psql's arguments for one statement: quiet, unaligned, tuples only, stop on error. The
    /// database goes in as `dbname='…'`, so whatever its text it is only ever a database name.
    public static func arguments(host: String, port: Int, user: String, database: String, sql: String) -> [String] {
        let quoted = "'" + database.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
        return ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", String(port), "-U", user, "-d", "dbname=" + quoted, "-c", sql]
    }
}

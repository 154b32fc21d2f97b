import Foundation
import Policy
import Render
import Support

/// drctl serve's heartbeat into one production database: a row every `every`, as the heartbeat
/// role (INSERT on drctl_heartbeat only), while this replica leads. What a restore reads back.
public final class HeartbeatWriter: @unchecked Sendable {
    public let workload: String
    public let cluster: String
    let heartbeat: BackupPolicy.Heartbeat
    /// The session for one beat, built each time: a Secret mounted late or rotated is read then.
    let session: () throws -> any SQLSession
    private let lock = NSLock()
    private var success: Date?
    private var failure: String?

    public init(workload: String, cluster: String, heartbeat: BackupPolicy.Heartbeat, session: @escaping () throws -> any SQLSession) {
        self.workload = workload
        self.cluster = cluster
        self.heartbeat = heartbeat
        self.session = session
    }

    /// The last row written, and the last error since (nil once a row is written again).
    public var state: (lastSuccess: Date?, error: String?) { lock.withLock { (success, failure) } }

    /// One row; the error is kept for the metrics and thrown.
    public func beat(now: Date = Date()) throws {
        do {
            _ = try session().query(HeartbeatSQL.insert, database: heartbeat.database)
            lock.withLock { (success, failure) = (now, nil) }
        } catch {
            lock.withLock { failure = "\(error)" }
            throw error
        }
    }

    /// Beats on its own thread, every `every`, while `leads()`; a failure is logged when it
    /// starts and when it ends, not at every beat.
    public func start(leads: @escaping @Sendable () -> Bool, log: @escaping @Sendable (String) -> Void) {
        let every = TimeInterval(heartbeat.every.value.seconds)
        Thread.detachNewThread { [self] in
            var failing = false
            var next = Date()
            while true {
                if leads() {
                    do {
                        try beat()
                        if failing { log("heartbeat \(workload)/\(cluster): writing again") }
                        failing = false
                    } catch {
                        if !failing { log("heartbeat \(workload)/\(cluster): \(error)") }
                        failing = true
                    }
                }
                next = max(next.addingTimeInterval(every), Date().addingTimeInterval(every / 10))
                Thread.sleep(until: next)
            }
        }
    }
}

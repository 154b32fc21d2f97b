import Foundation
import Hummingbird
import Logging
import NIOCore

/// drctl serve's HTTP endpoints over Hummingbird. The handlers only read what the service has
/// already computed (they never touch the bucket), so a scrape stays fast during a drill.
public enum WebServer {
    public struct Handlers: Sendable {
        public var metrics: @Sendable () -> String
        public var statusPage: @Sendable () -> String
        public var drillPage: @Sendable (String) -> String?
        /// (ready, why not): catalog readable and the object stores reachable on the last attempt.
        public var ready: @Sendable () -> (Bool, String)
        /// JSON documents of the API: workloads, one workload's backups (nil: no such workload), drills.
        public var workloads: @Sendable () -> Data
        public var backups: @Sendable (String) -> Data?
        public var drills: @Sendable () -> Data
        /// A runbook's Markdown by file name (nil: none).
        public var runbook: @Sendable (String) -> String?
        /// (alive, why not): the liveness probe's answer (the scheduler still turns).
        public var alive: @Sendable () -> (Bool, String) = { (true, "") }

        public init(metrics: @escaping @Sendable () -> String, statusPage: @escaping @Sendable () -> String,
                    drillPage: @escaping @Sendable (String) -> String?, ready: @escaping @Sendable () -> (Bool, String),
                    workloads: @escaping @Sendable () -> Data, backups: @escaping @Sendable (String) -> Data?, drills: @escaping @Sendable () -> Data,
                    runbook: @escaping @Sendable (String) -> String?) {
            self.metrics = metrics; self.statusPage = statusPage; self.drillPage = drillPage; self.ready = ready
            self.workloads = workloads; self.backups = backups; self.drills = drills; self.runbook = runbook
        }
    }

    static func text(_ s: String, _ type: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: type, .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    static func json(_ d: Data, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: d)))
    }

    /// Starts serving on host:port (port 0: any free port) in the background; returns the bound
    /// port once the server listens. Errors binding are thrown here.
    public static func start(host: String, port: Int, handlers h: Handlers) throws -> Int {
        let router = Router()
        router.get("/metrics") { _, _ in text(h.metrics(), MetricsText.contentType) }
        router.get("/healthz") { _, _ in
            let (ok, why) = h.alive()
            return text(ok ? "ok\n" : "not alive: \(why)\n", "text/plain", status: ok ? .ok : .serviceUnavailable)
        }
        router.get("/readyz") { _, _ in
            let (ok, why) = h.ready()
            return text(ok ? "ready\n" : "not ready: \(why)\n", "text/plain", status: ok ? .ok : .serviceUnavailable)
        }
        router.get("/") { _, _ in text(h.statusPage(), "text/html; charset=utf-8") }
        router.get("/drills/:id") { _, context in
            guard let id = context.parameters.get("id"), let page = h.drillPage(id) else { return text("no such drill\n", "text/plain", status: .notFound) }
            return text(page, "text/html; charset=utf-8")
        }
        router.get("/api/v1/workloads") { _, _ in json(h.workloads()) }
        router.get("/api/v1/workloads/:name/backups") { _, context in
            guard let name = context.parameters.get("name"), let d = h.backups(name) else {
                return json(Data(#"{"error":"no such workload"}"#.utf8), status: .notFound)
            }
            return json(d)
        }
        router.get("/api/v1/drills") { _, _ in json(h.drills()) }
        router.get("/runbooks/:name") { _, context in
            guard let name = context.parameters.get("name"), let md = h.runbook(name) else { return text("no such runbook\n", "text/plain", status: .notFound) }
            return text(md, "text/markdown; charset=utf-8")
        }

        let bound = BoundPort()
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "drctl"),
                              onServerRunning: { channel in bound.set(channel.localAddress?.port ?? port) },
                              logger: Logger(label: "drctl.http", factory: { _ in SwiftLogNoOpLogHandler() }))
        Task {
            do { try await app.run() } catch { bound.fail(error) }
        }
        return try bound.wait()
    }

    final class BoundPort: @unchecked Sendable {
        let cond = NSCondition()
        var port: Int?
        var error: (any Error)?
        func set(_ p: Int) { cond.withLock { port = p; cond.broadcast() } }
        func fail(_ e: any Error) { cond.withLock { error = e; cond.broadcast() } }
        func wait() throws -> Int {
            cond.lock()
            defer { cond.unlock() }
            while port == nil && error == nil { cond.wait() }
            if let error { throw error }
            return port!
        }
    }
}

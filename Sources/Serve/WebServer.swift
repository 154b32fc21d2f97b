import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
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
        /// The report page for a window (`?since=30d`; nil: the default); nil result: a bad window.
        public var report: @Sendable (String?) -> String? = { _ in nil }
        /// (alive, why not): the liveness probe's answer (the scheduler still turns).
        public var alive: @Sendable () -> (Bool, String) = { (true, "") }
        /// Who may see the page, the drills, the API and the runbooks, from the request's
        /// Authorization header (nil: everyone). Called off the event loop: it may block.
        public var authorize: (@Sendable (String?) -> Access)?

        public init(metrics: @escaping @Sendable () -> String, statusPage: @escaping @Sendable () -> String,
                    drillPage: @escaping @Sendable (String) -> String?, ready: @escaping @Sendable () -> (Bool, String),
                    workloads: @escaping @Sendable () -> Data, backups: @escaping @Sendable (String) -> Data?, drills: @escaping @Sendable () -> Data,
                    runbook: @escaping @Sendable (String) -> String?) {
            self.metrics = metrics; self.statusPage = statusPage; self.drillPage = drillPage; self.ready = ready
            self.workloads = workloads; self.backups = backups; self.drills = drills; self.runbook = runbook
        }
    }

    /// The answer of `Handlers.authorize`.
    public enum Access: Sendable, Equatable {
        case allowed
        /// No token, or one the API server does not accept: 401.
        case unauthenticated
        /// A user without the permission: 403, naming it.
        case forbidden(String)
        /// The decision could not be made (API server unreachable): 503.
        case unavailable(String)
    }

    /// `body`'s response if `authorize` allows the request, else its refusal. Exporters' paths
    /// (/metrics, /healthz, /readyz) never come here: they hold nothing secret.
    static func guarded(_ h: Handlers, _ request: Request, _ body: @Sendable () -> Response) async -> Response {
        guard let authorize = h.authorize else { return body() }
        let header = request.headers[.authorization]
        let access = await withCheckedContinuation { (c: CheckedContinuation<Access, Never>) in
            DispatchQueue.global().async { c.resume(returning: authorize(header)) }
        }
        switch access {
        case .allowed: return body()
        case .unauthenticated:
            var r = text("a Kubernetes bearer token is required (Authorization: Bearer TOKEN)\n", "text/plain", status: .unauthorized)
            r.headers[.wwwAuthenticate] = "Bearer"
            return r
        case .forbidden(let why): return text("forbidden: \(why)\n", "text/plain", status: .forbidden)
        // The cause goes to the service log, not to a caller nobody has authenticated.
        case .unavailable: return text("cannot check access now: the Kubernetes API server did not answer\n", "text/plain", status: .serviceUnavailable)
        }
    }

    static func text(_ s: String, _ type: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: type, .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    static func json(_ d: Data, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(bytes: d)))
    }

    /// Starts serving on host:port (port 0: any free port) in the background; returns the bound
    /// port once the server listens. Errors binding are thrown here.
    /// With `tls` (PEM files of the certificate chain and its key), HTTPS only.
    public static func start(host: String, port: Int, handlers h: Handlers, idleTimeout: Int = 60, tls: (cert: String, key: String)? = nil) throws -> Int {
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
        router.get("/") { r, _ in await guarded(h, r) { text(h.statusPage(), "text/html; charset=utf-8") } }
        router.get("/drills/:id") { r, context in
            let id = context.parameters.get("id")
            return await guarded(h, r) {
                guard let id, let page = h.drillPage(id) else { return text("no such drill\n", "text/plain", status: .notFound) }
                return text(page, "text/html; charset=utf-8")
            }
        }
        router.get("/api/v1/workloads") { r, _ in await guarded(h, r) { json(h.workloads()) } }
        router.get("/api/v1/workloads/:name/backups") { r, context in
            let name = context.parameters.get("name")
            return await guarded(h, r) {
                guard let name, let d = h.backups(name) else { return json(Data(#"{"error":"no such workload"}"#.utf8), status: .notFound) }
                return json(d)
            }
        }
        router.get("/report") { r, _ in
            let since = r.uri.queryParameters.get("since")
            return await guarded(h, r) {
                guard let page = h.report(since) else { return text("bad window: expected ?since=30d (a duration)\n", "text/plain", status: .badRequest) }
                return text(page, "text/html; charset=utf-8")
            }
        }
        router.get("/api/v1/drills") { r, _ in await guarded(h, r) { json(h.drills()) } }
        router.get("/runbooks/:name") { r, context in
            let name = context.parameters.get("name")
            return await guarded(h, r) {
                guard let name, let md = h.runbook(name) else { return text("no such runbook\n", "text/plain", status: .notFound) }
                return text(md, "text/markdown; charset=utf-8")
            }
        }

        let bound = BoundPort()
        // Idle keep-alive connections are closed (Hummingbird keeps them forever by default).
        var server: HTTPServerBuilder = .http1(configuration: .init(idleTimeout: .seconds(Int64(idleTimeout))))
        if let tls {
            let chain: [NIOSSLCertificate]
            let key: NIOSSLPrivateKey
            do {
                chain = try NIOSSLCertificate.fromPEMFile(tls.cert)
                key = try NIOSSLPrivateKey(file: tls.key, format: .pem)
            } catch {
                throw TLSFilesError(description: "cannot read --tls-cert \(tls.cert) / --tls-key \(tls.key): \(error)")
            }
            guard !chain.isEmpty else { throw TLSFilesError(description: "--tls-cert \(tls.cert) holds no PEM certificate") }
            var config = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
            config.minimumTLSVersion = .tlsv12
            server = try .tls(server, tlsConfiguration: config)
        }
        let app = Application(router: router, server: server,
                              configuration: .init(address: .hostname(host, port: port), serverName: "drctl"),
                              onServerRunning: { channel in bound.set(channel.localAddress?.port ?? port) },
                              logger: Logger(label: "drctl.http", factory: { _ in SwiftLogNoOpLogHandler() }))
        Task {
            do { try await app.run() } catch { bound.fail(error) }
        }
        return try bound.wait()
    }

    public struct TLSFilesError: Error, CustomStringConvertible { public var description: String }

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

import Foundation
import HTTP
import Support

/// An API error, decoded from the `Status` object the server returns.
public struct KubeError: Error, CustomStringConvertible, Sendable {
    public var code: Int
    public var reason: String
    public var message: String
    public var causes: [String]
    public var operation: String

    public var description: String {
        "\(operation): \(code) \(reason)\(message.isEmpty ? "" : ": \(message)")" + (causes.isEmpty ? "" : " (\(causes.joined(separator: "; ")))")
    }
    public var isNotFound: Bool { code == 404 }
    public var isConflict: Bool { code == 409 }
}

/// A small Kubernetes API client over libcurl: JSON in and out, no kubectl.
public final class KubeClient: @unchecked Sendable {
    public let config: KubeConfig
    let transport: any HTTPTransport
    private let lock = NSLock()
    private var execCredential: (token: String, expires: Date?)?
    /// Sent as User-Agent, which the API server's audit log records: one replica's requests
    /// told from another's of the same service account.
    public var userAgent = KubeClient.processUserAgent
    /// The fence whose closing stops this client's creates and updates (nil for the client that
    /// renews and releases the lease, which must outlive it).
    public var fence: Fence? = .process

    private static let agentLock = NSLock()
    nonisolated(unsafe) private static var agent = "drctl"
    /// The User-Agent of clients made from now on (drctl serve names its replica in it).
    public static var processUserAgent: String {
        get { agentLock.withLock { agent } }
        set { agentLock.withLock { agent = newValue } }
    }

    /// `timeouts`: the transport's (a lease renewal must fail fast, not wait out a stall).
    public init(config: KubeConfig, transport: (any HTTPTransport)? = nil, timeouts: TimeoutOptions = TimeoutOptions()) throws {
        self.config = config
        var tls = config.tls
        if case .exec(let plugin) = config.auth {
            // A plugin may answer with a client certificate instead of a token.
            let cred = try Self.runExec(plugin, server: config.server)
            if let cert = cred.cert, let key = cred.key { tls.clientCertificatePEM = cert; tls.clientKeyPEM = key }
            if let t = cred.token { execCredential = (t, cred.expires) }
        }
        self.transport = transport ?? CurlTransport(tls: tls, timeouts: timeouts)
    }

    /// The Authorization header for the next request.
    func bearer() throws -> String? {
        switch config.auth {
        case .none, .clientCertificate: return nil
        case .token(let t): return t
        case .tokenFile(let path):
            guard let t = try? String(contentsOfFile: path, encoding: .utf8) else { throw ConfigError("cannot read token file \(path)") }
            return t.trimmingCharacters(in: .whitespacesAndNewlines)
        case .exec(let plugin):
            return try lock.withLock {
                if let c = execCredential, c.expires.map({ $0.timeIntervalSinceNow > 30 }) ?? true { return c.token }
                let cred = try Self.runExec(plugin, server: config.server)
                guard let t = cred.token else { return nil }
                execCredential = (t, cred.expires)
                return t
            }
        }
    }

    struct ExecResult { var token: String?; var cert: [UInt8]?; var key: [UInt8]?; var expires: Date? }

    /// Runs an exec credential plugin and reads its ExecCredential from standard output.
    static func runExec(_ plugin: KubeConfig.ExecPlugin, server: String) throws -> ExecResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: plugin.command.hasPrefix("/") ? plugin.command : "/usr/bin/env")
        p.arguments = plugin.command.hasPrefix("/") ? plugin.args : [plugin.command] + plugin.args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in plugin.env { env[k] = v }
        env["KUBERNETES_EXEC_INFO"] = #"{"apiVersion":"\#(plugin.apiVersion)","kind":"ExecCredential","spec":{"interactive":false,"cluster":{"server":"\#(server)"}}}"#
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { throw ConfigError("exec credential plugin \(plugin.command): \(error.localizedDescription)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw ConfigError("exec credential plugin \(plugin.command) exited \(p.terminationStatus): \(errText.trimmingCharacters(in: .whitespacesAndNewlines).prefix(300))")
        }
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let status = obj["status"] as? [String: Any] else {
            throw ConfigError("exec credential plugin \(plugin.command) did not print an ExecCredential")
        }
        var r = ExecResult()
        r.token = status["token"] as? String
        r.cert = (status["clientCertificateData"] as? String).map { Array($0.utf8) }
        r.key = (status["clientKeyData"] as? String).map { Array($0.utf8) }
        r.expires = (status["expirationTimestamp"] as? String).flatMap(RFC3339.parse)
        guard r.token != nil || (r.cert != nil && r.key != nil) else {
            throw ConfigError("exec credential plugin \(plugin.command) returned neither a token nor a client certificate")
        }
        return r
    }

    /// One request; returns the decoded JSON body. A non-2xx answer throws its Status.
    @discardableResult
    public func request(_ method: String, _ path: String, query: [(String, String)] = [], body: [UInt8]? = nil,
                        contentType: String = "application/json") throws -> [String: Any] {
        let data = try send(method, path, query: query, body: body, contentType: contentType)
        if data.isEmpty { return [:] }
        guard let obj = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any] else {
            throw LocalError("\(method) \(path): the answer is not a JSON object")
        }
        return obj
    }

    /// Whether this user may do `verb` (a SelfSubjectAccessReview): asking first keeps an
    /// expected refusal out of the cluster's audit log as a 403.
    public func canI(_ verb: String, group: String = "", resource: String, namespace: String?, name: String? = nil) throws -> Bool {
        var attributes: [String: Any] = ["verb": verb, "group": group, "resource": resource]
        if let namespace { attributes["namespace"] = namespace }
        if let name { attributes["name"] = name }
        let review: [String: Any] = ["apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": ["resourceAttributes": attributes]]
        let r = try request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body: Array(try JSONSerialization.data(withJSONObject: review)))
        return (r["status"] as? [String: Any])?["allowed"] as? Bool ?? false
    }

    /// Who the API server takes this client for (a SelfSubjectReview, Kubernetes >= 1.28).
    public func whoAmI() throws -> String {
        let review: [String: Any] = ["apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"]
        let r = try request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body: Array(try JSONSerialization.data(withJSONObject: review)))
        guard let user = ((r["status"] as? [String: Any])?["userInfo"] as? [String: Any])?["username"] as? String, !user.isEmpty else {
            throw LocalError("the API server's SelfSubjectReview named no user")
        }
        return user
    }

    /// A pod's log (the pods/log subresource): text.
    public func log(namespace: String, pod: String) throws -> String {
        String(decoding: try send("GET", "/api/v1/namespaces/\(namespace)/pods/\(pod)/log", accept: "text/plain"), as: UTF8.self)
    }

    func send(_ method: String, _ path: String, query: [(String, String)] = [], body: [UInt8]? = nil,
              contentType: String = "application/json", accept: String = "application/json") throws -> [UInt8] {
        if let fence, ["POST", "PUT", "PATCH"].contains(method) { try fence.check("\(method) \(path)") }
        var url = config.server + path
        if !query.isEmpty {
            url += "?" + query.map { "\($0.0)=\(URIEncoding.encode($0.1))" }.joined(separator: "&")
        }
        var headers: [(name: String, value: String)] = [("Accept", accept), ("User-Agent", userAgent)]
        if body != nil { headers.append(("Content-Type", contentType)) }
        if let t = try bearer() { headers.append(("Authorization", "Bearer \(t)")) }
        let handler = CollectingHandler()
        let operation = "\(method) \(path)"
        let response: HTTPResponse
        do {
            response = try transport.perform(HTTPRequest(method: method, url: url, headers: headers, body: body.map { .bytes($0) } ?? .empty), handler: handler)
        } catch let e as TransportError {
            throw LocalError("\(operation): cannot reach the API server \(config.server) (\(config.source)): \(e.message)")
        }
        guard (200..<300).contains(response.status) else { throw Self.decodeStatus(response, operation: operation) }
        return handler.data
    }

    static func decodeStatus(_ r: HTTPResponse, operation: String) -> KubeError {
        let obj = (try? JSONSerialization.jsonObject(with: Data(r.errorBody))) as? [String: Any]
        let details = obj?["details"] as? [String: Any]
        let causes = (details?["causes"] as? [[String: Any]] ?? []).map { c in
            [c["field"] as? String, c["message"] as? String].compactMap { $0 }.joined(separator: ": ")
        }
        var reason = obj?["reason"] as? String ?? ""
        if reason.isEmpty {
            reason = [401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 410: "Gone", 422: "Invalid"][r.status] ?? "Error"
        }
        return KubeError(code: r.status, reason: reason, message: obj?["message"] as? String ?? String(decoding: r.errorBody.prefix(300), as: UTF8.self),
                         causes: causes, operation: operation)
    }

    // MARK: resources

    /// Where a kind lives: its resource name and whether it is namespaced (API discovery, cached).
    public struct ResourceInfo: Sendable { public var path: String; public var name: String; public var namespaced: Bool }
    private var discovered: [String: [String: ResourceInfo]] = [:]

    /// `apps/v1` + `Deployment` -> /apis/apps/v1, deployments, namespaced.
    public func resource(apiVersion: String, kind: String) throws -> ResourceInfo {
        let base = apiVersion.contains("/") ? "/apis/\(apiVersion)" : "/api/\(apiVersion)"
        if let known = lock.withLock({ discovered[apiVersion] }) {
            if let r = known[kind] { return r }
            throw LocalError("the API server has no kind \(kind) in \(apiVersion)")
        }
        let list: [String: Any]
        do {
            list = try request("GET", base)
        } catch let e as KubeError where e.isNotFound {
            throw LocalError("the API server does not serve \(apiVersion) (is the CRD installed? \(kind) needs it)")
        }
        var map: [String: ResourceInfo] = [:]
        for r in list["resources"] as? [[String: Any]] ?? [] {
            guard let name = r["name"] as? String, !name.contains("/"), let k = r["kind"] as? String else { continue }
            map[k] = ResourceInfo(path: base, name: name, namespaced: r["namespaced"] as? Bool ?? false)
        }
        lock.withLock { discovered[apiVersion] = map }
        guard let r = map[kind] else { throw LocalError("the API server has no kind \(kind) in \(apiVersion)") }
        return r
    }

    /// Whether a group/version is served (e.g. velero.io/v1, postgresql.cnpg.io/v1).
    public func serves(_ apiVersion: String) throws -> Bool {
        do {
            _ = try request("GET", apiVersion.contains("/") ? "/apis/\(apiVersion)" : "/api/\(apiVersion)")
            return true
        } catch let e as KubeError where e.isNotFound {
            return false
        }
    }

    /// The path of a collection (`name` nil) or of one object.
    public func path(apiVersion: String, kind: String, namespace: String?, name: String? = nil) throws -> String {
        let r = try resource(apiVersion: apiVersion, kind: kind)
        var p = r.path
        if r.namespaced { p += "/namespaces/\(namespace ?? config.namespace)" }
        p += "/\(r.name)"
        if let name { p += "/\(name)" }
        return p
    }

    public func get(apiVersion: String, kind: String, namespace: String? = nil, name: String) throws -> [String: Any]? {
        do {
            return try request("GET", path(apiVersion: apiVersion, kind: kind, namespace: namespace, name: name))
        } catch let e as KubeError where e.isNotFound {
            return nil
        }
    }

    /// Every object of a kind (following `continue` tokens), optionally by label selector.
    public func list(apiVersion: String, kind: String, namespace: String? = nil, labelSelector: String? = nil, pageSize: Int = 500) throws -> [[String: Any]] {
        var out: [[String: Any]] = []
        var token: String?
        let p = try path(apiVersion: apiVersion, kind: kind, namespace: namespace)
        repeat {
            var q = [("limit", String(pageSize))]
            if let labelSelector { q.append(("labelSelector", labelSelector)) }
            if let token { q.append(("continue", token)) }
            let page = try request("GET", p, query: q)
            out += page["items"] as? [[String: Any]] ?? []
            token = (page["metadata"] as? [String: Any])?["continue"] as? String
            if token?.isEmpty == true { token = nil }
        } while token != nil
        return out
    }

    /// A watch event: ADDED, MODIFIED, DELETED (ERROR events are thrown as KubeError).
    public struct WatchEvent { public var type: String; public var object: [String: Any] }

    /// Watches a collection (or one object by name) from `resourceVersion` until `handler`
    /// returns true or the server ends the stream after `timeout` seconds; returns the last
    /// resourceVersion seen, to resume from. A resourceVersion the server no longer has
    /// throws KubeError 410 (re-list and start again).
    @discardableResult
    public func watch(apiVersion: String, kind: String, namespace: String? = nil, name: String? = nil, resourceVersion: String,
                      timeout: Int = 20, _ handler: (WatchEvent) throws -> Bool) throws -> String {
        var q = [("watch", "true"), ("resourceVersion", resourceVersion), ("timeoutSeconds", String(timeout)), ("allowWatchBookmarks", "true")]
        if let name { q.append(("fieldSelector", "metadata.name=\(name)")) }
        let path = try path(apiVersion: apiVersion, kind: kind, namespace: namespace)
        let url = config.server + path + "?" + q.map { "\($0.0)=\(URIEncoding.encode($0.1))" }.joined(separator: "&")
        var headers: [(name: String, value: String)] = [("Accept", "application/json"), ("User-Agent", userAgent)]
        if let t = try bearer() { headers.append(("Authorization", "Bearer \(t)")) }
        // The stream only lives for this call: the handler never outlives it.
        return try withoutActuallyEscaping(handler) { handler in
            let stream = WatchStream(handler: handler, resourceVersion: resourceVersion)
            do {
                let r = try transport.perform(HTTPRequest(method: "GET", url: url, headers: headers), handler: stream)
                guard (200..<300).contains(r.status) else { throw Self.decodeStatus(r, operation: "WATCH \(path)") }
            } catch is WatchStream.Stop {
            } catch let e as TransportError {
                throw LocalError("WATCH \(path): \(e.message)")
            }
            if let e = stream.failure { throw e }
            return stream.resourceVersion
        }
    }

    final class WatchStream: HTTPResponseHandler {
        struct Stop: Error {}
        let handler: (WatchEvent) throws -> Bool
        var buffer: [UInt8] = []
        var resourceVersion: String
        var failure: KubeError?
        init(handler: @escaping (WatchEvent) throws -> Bool, resourceVersion: String) {
            self.handler = handler
            self.resourceVersion = resourceVersion
        }
        func body(_ chunk: UnsafeRawBufferPointer) throws {
            buffer += chunk
            while let nl = buffer.firstIndex(of: 10) {
                let line = Array(buffer[..<nl])
                buffer.removeSubrange(...nl)
                guard let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                      let type = obj["type"] as? String, let o = obj["object"] as? [String: Any] else { continue }
                if type == "ERROR" {
                    failure = KubeError(code: o["code"] as? Int ?? 500, reason: o["reason"] as? String ?? "Error", message: o["message"] as? String ?? "",
                                        causes: [], operation: "WATCH")
                    throw Stop()
                }
                if let rv = (o["metadata"] as? [String: Any])?["resourceVersion"] as? String { resourceVersion = rv }
                if type == "BOOKMARK" { continue }
                if try handler(WatchEvent(type: type, object: o)) { throw Stop() }
            }
        }
    }

    /// `waitFor` reached its deadline before the object was as wanted.
    public struct DeadlineExceeded: Error, CustomStringConvertible {
        public var object: String
        public var description: String { "\(object): not ready by the deadline" }
    }

    /// Waits until `done` holds for an object, by watching it (re-listing after 410 Expired and
    /// when a watch ends), by the deadline. `done` sees nil while the object does not exist.
    public func waitFor(apiVersion: String, kind: String, namespace: String?, name: String, deadline: Date,
                        _ done: ([String: Any]?) throws -> Bool) throws -> [String: Any]? {
        while true {
            // List (one object) for its current state and the collection's resourceVersion.
            var q = [("fieldSelector", "metadata.name=\(name)")]
            q.append(("limit", "1"))
            let list = try request("GET", try path(apiVersion: apiVersion, kind: kind, namespace: namespace), query: q)
            var current = (list["items"] as? [[String: Any]])?.first
            if try done(current) { return current }
            var rv = (list["metadata"] as? [String: Any])?["resourceVersion"] as? String ?? "0"
            while Date() < deadline {
                let remaining = max(1, min(20, Int(deadline.timeIntervalSinceNow.rounded(.up))))
                var finished = false
                do {
                    rv = try watch(apiVersion: apiVersion, kind: kind, namespace: namespace, name: name, resourceVersion: rv, timeout: remaining) { e in
                        current = e.type == "DELETED" ? nil : e.object
                        finished = try done(current)
                        return finished
                    }
                } catch let e as KubeError where e.code == 410 {
                    break   // too old: list again
                }
                if finished { return current }
            }
            if Date() >= deadline { throw DeadlineExceeded(object: "\(kind) \(namespace.map { "\($0)/" } ?? "")\(name)") }
        }
    }

    /// Creates an object; with `dryRun` the server runs every stage (validation, admission) but storing it.
    public func create(_ object: [String: Any], dryRun: Bool = false) throws -> [String: Any] {
        let (apiVersion, kind, namespace, _) = try Self.identity(object)
        return try request("POST", path(apiVersion: apiVersion, kind: kind, namespace: namespace), query: dryRun ? [("dryRun", "All")] : [],
                           body: Array(try JSONSerialization.data(withJSONObject: object)))
    }

    /// Server-side apply as `fieldManager`: conflicts with other managers are errors unless `force`.
    public func apply(_ object: [String: Any], fieldManager: String = "drctl", force: Bool = false, dryRun: Bool = false) throws -> [String: Any] {
        let (apiVersion, kind, namespace, name) = try Self.identity(object)
        var q = [("fieldManager", fieldManager)]
        if force { q.append(("force", "true")) }
        if dryRun { q.append(("dryRun", "All")) }
        return try request("PATCH", path(apiVersion: apiVersion, kind: kind, namespace: namespace, name: name), query: q,
                           body: try ApplyPatchBody.encode(object), contentType: "application/apply-patch+yaml")
    }

    public func delete(apiVersion: String, kind: String, namespace: String? = nil, name: String, propagation: String = "Background") throws {
        let body = #"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"\#(propagation)"}"#
        try request("DELETE", path(apiVersion: apiVersion, kind: kind, namespace: namespace, name: name), body: Array(body.utf8))
    }

    /// DELETE of a namespace that may already be going: one that is gone (404), or Terminating
    /// with its finalizers still at work (409 Conflict, "The system is ensuring all content is
    /// removed from this namespace": registry/core/namespace/storage REST.Delete), is deleted as
    /// far as a DELETE can make it.
    public func deleteNamespace(_ name: String, propagation: String = "Foreground") throws {
        do {
            try delete(apiVersion: "v1", kind: "Namespace", name: name, propagation: propagation)
        } catch let e as KubeError where e.isNotFound || e.code == 409 {
        }
    }

    static func identity(_ o: [String: Any]) throws -> (String, String, String?, String) {
        guard let apiVersion = o["apiVersion"] as? String, let kind = o["kind"] as? String,
              let meta = o["metadata"] as? [String: Any], let name = meta["name"] as? String else {
            throw LocalError("object without apiVersion, kind and metadata.name")
        }
        return (apiVersion, kind, meta["namespace"] as? String, name)
    }
}

import Foundation
import HTTP
import Support
import Yams
import Paths

/// How drctl reaches a Kubernetes API server: one context of a kubeconfig, or the pod's
/// service account (in-cluster).
public struct KubeConfig: Sendable {
    public var server: String
    public var namespace: String
    /// Where it came from, for messages ("context prod in ~/.kube/config", "in-cluster").
    public var source: String
    public var tls: TLSOptions
    public var auth: Auth

    public enum Auth: Sendable {
        case none
        case token(String)
        /// Re-read on every request: projected service-account tokens rotate.
        case tokenFile(String)
        /// A client certificate, already in `tls`.
        case clientCertificate
        case exec(ExecPlugin)
    }

    /// An exec credential plugin (client.authentication.k8s.io), e.g. aws-iam-authenticator,
    /// kubelogin, gke-gcloud-auth-plugin.
    public struct ExecPlugin: Sendable {
        public var command: String
        public var args: [String]
        public var env: [String: String]
        public var apiVersion: String
    }

    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// What makes this connection unsafe, for a warning: an API server whose certificate is not
    /// checked, or a credential sent over plain http.
    public var transportWarnings: [String] {
        var w: [String] = []
        if tls.insecure && server.hasPrefix("https://") {
            w.append("\(source): insecure-skip-tls-verify is set: the API server's certificate is not checked, so anyone on the path can pose as \(server) and read drctl's credentials")
        }
        if server.hasPrefix("http://") {
            switch auth {
            case .token, .tokenFile, .exec:
                w.append("\(source): the API server \(server) is plain http:// and drctl sends it a bearer token: anyone on the path can read the token")
            case .none, .clientCertificate:
                w.append("\(source): the API server \(server) is plain http://: nothing drctl reads from it or sends to it is protected")
            }
        }
        return w
    }

    /// `--kubeconfig`, else `KUBECONFIG` (the first file of the list that exists), else
    /// `~/.kube/config`; with none of them, the in-cluster service account.
    public static func resolve(kubeconfig: String?, context: String?, namespace: String?,
                               environment: [String: String] = ProcessInfo.processInfo.environment,
                               serviceAccountDirectory: String = serviceAccountDirectory) throws -> KubeConfig {
        var candidates: [String] = []
        if let kubeconfig { candidates = [kubeconfig] }
        else if let list = environment["KUBECONFIG"], !list.isEmpty { candidates = list.split(separator: ":").map(String.init) }
        else if let home = environment["HOME"] { candidates = [home + "/.kube/config"] }
        if let file = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) {
            var c = try load(file: file, context: context)
            if let namespace { c.namespace = namespace }
            return c
        }
        if kubeconfig != nil { throw ConfigError("kubeconfig \(kubeconfig!) does not exist") }
        if environment["KUBERNETES_SERVICE_HOST"] != nil {
            var c = try inCluster(environment: environment, directory: serviceAccountDirectory)
            if let namespace { c.namespace = namespace }
            return c
        }
        throw ConfigError("no kubeconfig (\(candidates.joined(separator: ", ")) not found) and not running in a cluster: pass --kubeconfig")
    }

    /// The pod's service account: API server from KUBERNETES_SERVICE_HOST/PORT, token and CA
    /// from the mounted secret.
    public static func inCluster(environment: [String: String], directory: String) throws -> KubeConfig {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], let port = environment["KUBERNETES_SERVICE_PORT"] else {
            throw ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
        }
        guard FileManager.default.fileExists(atPath: directory + "/token") else {
            throw ConfigError("in-cluster: \(directory)/token is missing (is a service account token mounted?)")
        }
        var tls = TLSOptions()
        tls.caPEM = FileManager.default.contents(atPath: directory + "/ca.crt").map { Array($0) }
        let ns = (try? String(contentsOfFile: directory + "/namespace", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        let h = host.contains(":") ? "[\(host)]" : host
        return KubeConfig(server: "https://\(h):\(port)", namespace: ns ?? "default", source: "in-cluster service account",
                          tls: tls, auth: .tokenFile(directory + "/token"))
    }

    /// A YAML node as plain values. Yams' own `load` traps on a key that is not a string (found by
    /// `drctl-fuzz kubeconfig`); here such a key is an error naming its line.
    static func plain(_ node: Node, _ file: String) throws -> Any {
        switch node {
        case .scalar(let s):
            if s.style == .plain, let b = node.bool { return b }
            return s.string
        case .mapping(let m):
            var d: [String: Any] = [:]
            for (k, v) in m {
                guard case .scalar(let key) = k else { throw ConfigError("\(file):\(k.mark?.line ?? 0): a key that is not a string") }
                d[key.string] = try plain(v, file)
            }
            return d
        case .sequence(let s):
            return try s.map { try plain($0, file) }
        case .alias:   // compose() resolves aliases; an unresolved one reads as nothing
            return NSNull()
        }
    }

    /// One context of a kubeconfig file (its current-context unless `context` is given).
    public static func load(file: String, context wanted: String?) throws -> KubeConfig {
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch { throw ConfigError("cannot read kubeconfig \(file): \(error.localizedDescription)") }
        return try parse(text: text, file: file, context: wanted) { FileManager.default.contents(atPath: $0).map(Array.init) }
    }

    /// A kubeconfig's text; files it names (certificates, keys) are read through `read`, relative
    /// to the directory of `file`.
    package static func parse(text: String, file: String, context wanted: String?, read: (String) -> [UInt8]?) throws -> KubeConfig {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch { throw ConfigError("\(file): not YAML: \(error)") }
        guard let root = try node.map({ try plain($0, file) }) as? [String: Any] else { throw ConfigError("\(file): not a kubeconfig (no mapping at the top)") }
        let dir = Paths.parent(file)
        func named(_ list: String, _ name: String) throws -> [String: Any] {
            let entries = root[list] as? [[String: Any]] ?? []
            guard let e = entries.first(where: { $0["name"] as? String == name }) else {
                throw ConfigError("\(file): \(list) has no entry named '\(name)' (have: \(entries.compactMap { $0["name"] as? String }.joined(separator: ", ")))")
            }
            return e[String(list.dropLast())] as? [String: Any] ?? [:]
        }
        guard let contextName = wanted ?? (root["current-context"] as? String), !contextName.isEmpty else {
            throw ConfigError("\(file): no current-context; pass --context")
        }
        let ctx = try named("contexts", contextName)
        guard let clusterName = ctx["cluster"] as? String else { throw ConfigError("\(file): context '\(contextName)' names no cluster") }
        let cluster = try named("clusters", clusterName)
        let user = try (ctx["user"] as? String).map { try named("users", $0) } ?? [:]
        guard let server = cluster["server"] as? String, server.hasPrefix("https://") || server.hasPrefix("http://") else {
            throw ConfigError("\(file): cluster '\(clusterName)' has no https:// server")
        }
        func path(_ p: String) -> String { p.hasPrefix("/") ? p : dir + "/" + p }
        func pem(_ dataKey: String, _ fileKey: String, in m: [String: Any]) throws -> [UInt8]? {
            if let b64 = m[dataKey] as? String {
                guard let d = Data(base64Encoded: b64.filter { !$0.isWhitespace }) else { throw ConfigError("\(file): \(dataKey) is not base64") }
                return Array(d)
            }
            if let f = m[fileKey] as? String {
                guard let d = read(path(f)) else { throw ConfigError("\(file): cannot read \(fileKey) \(path(f))") }
                return d
            }
            return nil
        }
        var tls = TLSOptions()
        tls.caPEM = try pem("certificate-authority-data", "certificate-authority", in: cluster)
        tls.insecure = cluster["insecure-skip-tls-verify"] as? Bool ?? false
        var auth = Auth.none
        if let cert = try pem("client-certificate-data", "client-certificate", in: user) {
            guard let key = try pem("client-key-data", "client-key", in: user) else { throw ConfigError("\(file): user of context '\(contextName)' has a client certificate but no client key") }
            tls.clientCertificatePEM = cert
            tls.clientKeyPEM = key
            auth = .clientCertificate
        } else if let token = user["token"] as? String {
            auth = .token(token)
        } else if let tokenFile = user["tokenFile"] as? String {
            auth = .tokenFile(path(tokenFile))
        } else if let exec = user["exec"] as? [String: Any] {
            guard let command = exec["command"] as? String else { throw ConfigError("\(file): exec plugin without a command") }
            var env: [String: String] = [:]
            for e in exec["env"] as? [[String: Any]] ?? [] {
                if let n = e["name"] as? String, let v = e["value"] as? String { env[n] = v }
            }
            auth = .exec(ExecPlugin(command: command.contains("/") && !command.hasPrefix("/") ? path(command) : command,
                                    args: exec["args"] as? [String] ?? [], env: env,
                                    apiVersion: exec["apiVersion"] as? String ?? "client.authentication.k8s.io/v1"))
        }
        return KubeConfig(server: server.hasSuffix("/") ? String(server.dropLast()) : server, namespace: ctx["namespace"] as? String ?? "default",
                          source: "context \(contextName) in \(file)", tls: tls, auth: auth)
    }
}

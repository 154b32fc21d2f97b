import Foundation
import TestSupport

/// Tests/KubeAPIServer/kube_api_server.py on a free loopback port, with a throw-away CA, a
/// server certificate for 127.0.0.1, a client certificate (CN drctl-test) and a bearer token.
final class KubeAPI {
    let dir: String
    let pid: pid_t
    let port: Int
    var server: String { "https://127.0.0.1:\(port)" }
    let token = "drctl-test-token-\(UUID().uuidString.prefix(8))"
    /// drctl's service account (system:serviceaccount:drctl:drctl), held to `rbac` when given.
    let serviceAccountToken = "drctl-test-sa-\(UUID().uuidString.prefix(8))"

    /// `controllers`: run the simulated Velero and CNPG controllers against this object store;
    /// `network`: "loopback" (Services reachable from the test host) or "cluster" (only from a
    /// Job); `rbac`: a file of Roles and bindings the service account is held to; `running`:
    /// which simulated controllers act (velero, cnpg, apps, batch; all by default). Custom
    /// resources are validated against ../shared/reference/crds when it is there.
    init(groups: [String]? = nil, controllers rgw: RGW? = nil, running: [String]? = nil, network: String = "loopback", rbac: String? = nil,
         admission: String? = nil, superuserPassword: String? = nil, extraTokens: [String: String] = [:], environment: [String: String] = [:]) throws {
        dir = tempPath("kube-api")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func openssl(_ args: [String]) throws {
            let (st, out) = try run("/usr/bin/openssl", args)
            guard st == 0 else { throw FixtureError(description: "openssl \(args.first ?? ""): \(out)") }
        }
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                     "-subj", "/CN=drctl test kube CA", "-keyout", "\(dir)/ca.key", "-out", "\(dir)/ca.pem"])
        try """
            subjectAltName = IP:127.0.0.1
            """.write(toFile: "\(dir)/san.ext", atomically: true, encoding: .utf8)
        for (name, subject, ext) in [("server", "/CN=127.0.0.1", true), ("client", "/O=system:masters/CN=drctl-test", false)] {
            try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subject,
                         "-keyout", "\(dir)/\(name).key", "-out", "\(dir)/\(name).csr"])
            try openssl(["x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", "\(dir)/ca.pem", "-CAkey", "\(dir)/ca.key", "-CAcreateserial",
                         "-days", "2", "-out", "\(dir)/\(name).pem"] + (ext ? ["-extfile", "\(dir)/san.ext"] : []))
        }
        // "token user groups": the admin is in system:masters, the rest are held to RBAC.
        var tokens = "\(token) token-user system:masters,system:authenticated\n" +
            "\(serviceAccountToken) system:serviceaccount:drctl:drctl system:serviceaccounts,system:serviceaccounts:drctl,system:authenticated\n"
        for (t, user) in extraTokens { tokens += "\(t) \(user) system:authenticated\n" }
        try tokens.write(toFile: "\(dir)/tokens", atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["KUBE_TEST_SERVICE_NETWORK"] = network
        if let superuserPassword { env["KUBE_TEST_SUPERUSER_PASSWORD"] = superuserPassword }
        if let groups { env["KUBE_TEST_GROUPS"] = groups.joined(separator: ",") }
        if let running { env["KUBE_TEST_CONTROLLERS"] = running.joined(separator: ",") }
        env.merge(environment) { _, b in b }
        if let rgw {
            env["KUBE_TEST_S3_ENDPOINT"] = rgw.endpoint
            env["KUBE_TEST_S3_KEY"] = rgw.accessKey
            env["KUBE_TEST_S3_SECRET"] = rgw.secretKey
        }
        var args = [packageRoot.appendingPathComponent("Tests/KubeAPIServer/kube_api_server.py").path,
                    "--cert", "\(dir)/server.pem", "--key", "\(dir)/server.key", "--ca", "\(dir)/ca.pem",
                    "--tokens", "\(dir)/tokens", "--port-file", "\(dir)/port"]
        if rgw != nil { args.append("--controllers") }
        if let crds = referenceDirectory("crds") { args += ["--crds", crds] }
        if let rbac { args += ["--rbac", rbac] }
        if let admission { args += ["--admission", admission] }
        pid = try spawn(toolsPython, args, env: env, output: "\(dir)/server.log")
        var p: Int?
        for _ in 0..<200 {
            if let s = try? String(contentsOfFile: "\(dir)/port", encoding: .utf8), let n = Int(s) { p = n; break }
            usleep(25_000)
        }
        guard let p else {
            kill(pid, SIGKILL); _ = try? reap(pid)
            throw FixtureError(description: "kube test server did not start: \((try? String(contentsOfFile: "\(dir)/server.log", encoding: .utf8)) ?? "")")
        }
        port = p
    }

    deinit {
        // Asked to stop over HTTP (its simulated controllers stop their PostgreSQL servers); then
        // SIGKILL: a child spawned from a test's worker thread inherits its blocked SIGTERM.
        _ = try? run("/usr/bin/curl", ["-sk", "-m", "30", "-X", "POST", "\(server)/__shutdown"])
        kill(pid, SIGKILL)
        _ = try? reap(pid, within: 30)
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// The authorization decisions about the service account, in order (with `rbac`).
    func audit() throws -> [[String: Any]] {
        let (st, out) = try run("/usr/bin/curl", ["-sk", "-m", "30", "\(server)/__audit"])
        guard st == 0, let obj = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] else {
            throw FixtureError(description: "GET /__audit: \(out)")
        }
        return obj["items"] as? [[String: Any]] ?? []
    }

    /// Every write the server accepted, in order (its write log): verb, user, resource, namespace, name.
    func writes() throws -> [[String: Any]] {
        let (st, out) = try run("/usr/bin/curl", ["-sk", "-m", "30", "\(server)/__writes"])
        guard st == 0, let obj = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] else {
            throw FixtureError(description: "GET /__writes: \(out)")
        }
        return obj["items"] as? [[String: Any]] ?? []
    }

    /// The writes since `mark` (a count from `writes()`) that touched anything outside drill
    /// namespaces, other than drctl's Restores and resource-modifier ConfigMaps in Velero's
    /// namespace and the Restores' status: each one a breach of a drill's blast radius.
    func writesOutsideDrills(since mark: Int) throws -> [String] {
        try writes().dropFirst(mark).compactMap { w in
            let ns = w["namespace"] as? String ?? "", name = w["name"] as? String ?? "", resource = w["resource"] as? String ?? ""
            if ns.hasPrefix("drill-") || (resource == "namespaces" && name.hasPrefix("drill-")) { return nil }
            if ns == "velero" && (resource == "restores" || (resource == "configmaps" && name.hasPrefix("drctl-drill-"))) { return nil }
            return "\(w["verb"] ?? "?") \(resource) \(ns.isEmpty ? "" : ns + "/")\(name) by \(w["user"] ?? "?")"
        }
    }

    /// One request as it is, with curl and the admin's token (or `bearer`): (status, Warning headers, body).
    func raw(_ method: String, _ path: String, body: [UInt8]? = nil, contentType: String = "application/json", bearer: String? = nil) throws -> (Int, [String], String) {
        var args = ["-sk", "-m", "30", "-i", "-X", method, "-H", "Authorization: Bearer \(bearer ?? token)"]
        if let body {
            let file = file("body-\(UUID().uuidString.prefix(8))")
            try Data(body).write(to: URL(fileURLWithPath: file))
            args += ["-H", "Content-Type: \(contentType)", "--data-binary", "@\(file)"]
        }
        let (st, out) = try run("/usr/bin/curl", args + ["\(server)\(path)"])
        guard st == 0, let split = out.range(of: "\r\n\r\n") else { throw FixtureError(description: "\(method) \(path): \(out)") }
        let head = out[..<split.lowerBound].split(separator: "\r\n")
        let code = Int(head.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        let warnings = head.filter { $0.lowercased().hasPrefix("warning:") }.map { String($0.dropFirst(8)).trimmingCharacters(in: .whitespaces) }
        return (code, warnings, String(out[split.upperBound...]))
    }

    func file(_ name: String) -> String { "\(dir)/\(name)" }
    func base64(_ name: String) throws -> String { try Data(contentsOf: URL(fileURLWithPath: file(name))).base64EncodedString() }

    /// A kubeconfig with bearer token `bearer` (one of `extraTokens`), named `name`.
    func kubeconfig(bearer: String, name: String) throws -> String {
        let text = try String(contentsOfFile: try kubeconfig("token"), encoding: .utf8)
        let path = file("kubeconfig-\(name)")
        try text.replacingOccurrences(of: "token: \(token)", with: "token: \(bearer)").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Cuts (or heals) the client with bearer token `bearer` off the server, as a partition would.
    func partition(_ bearer: String, cut: Bool) throws {
        let (st, out) = try run("/usr/bin/curl", ["-sk", "-m", "10", "-X", "POST", "-d", "{\"token\": \"\(bearer)\", \"cut\": \(cut)}", "\(server)/__partition"])
        guard st == 0 else { throw FixtureError(description: "POST /__partition: \(out)") }
    }

    /// A kubeconfig for one way of authenticating: "cert" (inline data), "cert-files", "token", "exec".
    func kubeconfig(_ mode: String, ca: Bool = true) throws -> String {
        var user: String
        switch mode {
        case "cert":
            user = "client-certificate-data: \(try base64("client.pem"))\n    client-key-data: \(try base64("client.key"))"
        case "cert-files":
            user = "client-certificate: client.pem\n    client-key: client.key"
        case "token":
            user = "token: \(token)"
        case "serviceaccount":
            user = "token: \(serviceAccountToken)"
        case "exec":
            let script = file("exec-plugin.sh")
            try """
                #!/bin/sh
                # an exec credential plugin: prints an ExecCredential with the test token
                echo "$KUBERNETES_EXEC_INFO" > \(file("exec-info"))
                printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$TEST_TOKEN"
                """.write(toFile: script, atomically: true, encoding: .utf8)
            chmod(script, 0o755)
            user = "exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: \(script)\n      env: [{name: TEST_TOKEN, value: \(token)}]"
        default:
            throw FixtureError(description: "unknown mode \(mode)")
        }
        let path = file("kubeconfig-\(mode)\(ca ? "" : "-noca")")
        try """
            apiVersion: v1
            kind: Config
            current-context: test
            clusters:
            - name: test
              cluster:
                server: \(server)
            \(ca ? "    certificate-authority: ca.pem" : "")
            users:
            - name: u
              user:
                \(user)
            contexts:
            - name: test
              context: {cluster: test, user: u, namespace: default}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

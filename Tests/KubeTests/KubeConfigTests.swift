import Foundation
import Testing
@testable import Kube
import Support

/// kubeconfig resolution and parsing as kubectl documents it (kubernetes.io/docs/concepts/
/// configuration/organize-cluster-access-kubeconfig/): --kubeconfig, else the first KUBECONFIG
/// file that exists, else ~/.kube/config, else the pod's service account.
struct KubeConfigTests {
    static let config = """
        apiVersion: v1
        kind: Config
        current-context: prod
        clusters:
        - name: talos
          cluster:
            server: https://10.0.0.1:6443/
            certificate-authority-data: \(Data("CA".utf8).base64EncodedString())
        users:
        - name: admin
          user:
            token: t0ken-value
        - name: robot
          user:
            tokenFile: token
        - name: plugin
          user:
            exec:
              command: ./bin/auth
              args: [get-token]
              env: [{name: A, value: b}]
        contexts:
        - name: prod
          context: {cluster: talos, user: admin, namespace: drctl}
        - name: robot
          context: {cluster: talos, user: robot}
        - name: plugin
          context: {cluster: talos, user: plugin}
        """

    @Test func aContextGivesServerNamespaceCAAndCredentials() throws {
        let c = try KubeConfig.parse(text: Self.config, file: "/etc/kube/config", context: nil) { _ in nil }
        #expect(c.server == "https://10.0.0.1:6443" && c.namespace == "drctl")
        #expect(c.tls.caPEM == Array("CA".utf8))
        guard case .token(let t) = c.auth else { Issue.record("\(c.auth)"); return }
        #expect(t == "t0ken-value")
        #expect(c.transportWarnings.isEmpty)

        let robot = try KubeConfig.parse(text: Self.config, file: "/etc/kube/config", context: "robot") { _ in nil }
        guard case .tokenFile(let f) = robot.auth else { Issue.record("\(robot.auth)"); return }
        #expect(f == "/etc/kube/token" && robot.namespace == "default", "relative to the kubeconfig's directory")

        let plugin = try KubeConfig.parse(text: Self.config, file: "/etc/kube/config", context: "plugin") { _ in nil }
        guard case .exec(let e) = plugin.auth else { Issue.record("\(plugin.auth)"); return }
        #expect(e.command == "/etc/kube/./bin/auth" && e.args == ["get-token"] && e.env == ["A": "b"])
    }

    @Test func mistakesNameTheFileAndTheEntry() {
        func message(_ text: String, _ context: String? = nil) -> String {
            do { _ = try KubeConfig.parse(text: text, file: "/k", context: context) { _ in nil }; return "" } catch { return "\(error)" }
        }
        #expect(message(Self.config, "staging").contains("contexts has no entry named 'staging'"))
        #expect(message(Self.config.replacingOccurrences(of: "current-context: prod", with: "")).contains("no current-context"))
        #expect(message(Self.config.replacingOccurrences(of: "https://10.0.0.1:6443/", with: "10.0.0.1")).contains("no https:// server"))
        #expect(message("? [a]\n: b\n").contains("/k"))
    }

    @Test func plainHTTPAndSkippedVerificationAreWarnedAbout() throws {
        let http = try KubeConfig.parse(text: Self.config.replacingOccurrences(of: "https://", with: "http://"), file: "/k", context: nil) { _ in nil }
        #expect(http.transportWarnings.contains { $0.contains("bearer token") })
        let insecure = try KubeConfig.parse(text: Self.config.replacingOccurrences(of: "    server: https://10.0.0.1:6443/", with: "    server: https://10.0.0.1:6443/\n    insecure-skip-tls-verify: true"),
                                            file: "/k", context: nil) { _ in nil }
        #expect(insecure.transportWarnings.contains { $0.contains("insecure-skip-tls-verify") })
    }

    @Test func resolutionOrder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-kube-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/sa", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.config.write(toFile: dir + "/second", atomically: true, encoding: .utf8)
        // KUBECONFIG: the first file that exists.
        let fromList = try KubeConfig.resolve(kubeconfig: nil, context: nil, namespace: "other",
                                              environment: ["KUBECONFIG": "\(dir)/missing:\(dir)/second"], serviceAccountDirectory: dir + "/sa")
        #expect(fromList.source.contains("\(dir)/second") && fromList.namespace == "other")
        // --kubeconfig that does not exist is an error, not a fallback.
        #expect(throws: ConfigError.self) {
            try KubeConfig.resolve(kubeconfig: dir + "/nope", context: nil, namespace: nil, environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"],
                                   serviceAccountDirectory: dir + "/sa")
        }
        // No file at all: the pod's service account.
        try "tok".write(toFile: dir + "/sa/token", atomically: true, encoding: .utf8)
        try "drctl\n".write(toFile: dir + "/sa/namespace", atomically: true, encoding: .utf8)
        let pod = try KubeConfig.resolve(kubeconfig: nil, context: nil, namespace: nil,
                                         environment: ["HOME": dir, "KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"],
                                         serviceAccountDirectory: dir + "/sa")
        #expect(pod.server == "https://[fd00::1]:443" && pod.namespace == "drctl")
        guard case .tokenFile(let f) = pod.auth else { Issue.record("\(pod.auth)"); return }
        #expect(f == dir + "/sa/token")
        #expect(throws: ConfigError.self) { try KubeConfig.resolve(kubeconfig: nil, context: nil, namespace: nil, environment: ["HOME": dir]) }
    }
}

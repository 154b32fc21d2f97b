import Foundation
import Support
import Testing
import Kube
import ObjectStore
import TestSupport

/// Secrets never appear in anything drctl writes: a run of every command that handles one —
/// successes and failures, table and `-o json`, verbose request logs, drills host and cluster,
/// drctl serve's metrics, API and page, a crash — then a grep of all the output, the evidence in
/// the bucket and the catalog file for the known test secrets: the S3 secret key (and a wrong
/// one), the API server's bearer token (and a wrong one), the client certificate's private key,
/// and the recovered database's superuser password.
@Suite(.serialized) struct SecretLeakTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    @Test func noSecretInAnyOutputEvidenceMetricsOrCatalog() throws {
        let password = "Db-Pa55word-\(UUID().uuidString.prefix(12))"
        let f = try ClusterFixture(rgw: rgw, bucket: "secrets", superuserPassword: password)
        try f.policy("= 42")
        let wrongSecret = "Wr0ngSecret/\(UUID().uuidString)+x"
        let badToken = "bad-token-\(UUID().uuidString)"
        let badKubeconfig = f.api.file("kubeconfig-bad-token")   // beside ca.pem, which it names
        try String(contentsOfFile: f.kubeconfig, encoding: .utf8).replacingOccurrences(of: f.api.token, with: badToken)
            .write(toFile: badKubeconfig, atomically: true, encoding: .utf8)
        let certKubeconfig = try f.api.kubeconfig("cert")
        let scratch = f.work + "/scratch"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let src = "s3://\(f.bucket)/cnpg"

        var outputs: [(String, String)] = []
        func drctl(_ args: [String], env: [String: String]? = nil) throws {
            let (st, out) = try run(drctlBinary, args, env: env ?? f.env)
            outputs.append(("drctl \(args.joined(separator: " ")) (exit \(st))", out))
        }
        var wrongEnv = f.env
        wrongEnv["AWS_SECRET_ACCESS_KEY"] = wrongSecret
        try drctl(["catalog", "sync", "--policies", f.policies, "-o", "json"])
        try drctl(["catalog", "sync", "--policies", f.policies, "-v"])
        try drctl(["status", "--policies", f.policies, "-o", "json"])
        try drctl(["status", "--policies", f.policies, "--catalog", f.work + "/data/catalog.sqlite"])
        try drctl(["backups", "--endpoint", rgw.endpoint, "--source", src, "--server", "app-db", "-o", "json"])
        try drctl(["s3", "ls", "--endpoint", rgw.endpoint, "-r", "-v", "s3://\(f.bucket)/"])
        try drctl(["s3", "ls", "--endpoint", rgw.endpoint, "-v", "s3://\(f.bucket)/"], env: wrongEnv)
        try drctl(["s3", "get", "--endpoint", rgw.endpoint, "s3://\(f.bucket)/cnpg/app-db/base/missing", "-"], env: wrongEnv)
        try drctl(["s3", "presign", "--endpoint", rgw.endpoint, "s3://\(f.bucket)/cnpg"])   // prints a signature by design, but never the key
        try drctl(["status", "--policies", f.policies], env: wrongEnv)
        try drctl(["verify", "n8n-prod", "--mode", "cluster", "--kubeconfig", f.kubeconfig, "--policies", f.policies, "-o", "json"])
        try drctl(["verify", "n8n-prod", "--mode", "cluster", "--kubeconfig", badKubeconfig, "--policies", f.policies])
        try drctl(["verify", "n8n-prod", "--policies", f.policies, "--scratch-dir", scratch, "-o", "json"])
        try drctl(["restore", "n8n-prod", "--policies", f.policies, "--at", "latest", "--to", f.work + "/restored", "--dry-run"])
        try drctl(["prune", "--endpoint", rgw.endpoint, "--source", src, "--server", "app-db", "--retention", "7d", "-o", "json"])
        try drctl(["apply", f.policies, "--dry-run=server", "--kubeconfig", certKubeconfig, "-o", "json"])
        try drctl(["apply", f.policies, "--dry-run=server", "--kubeconfig", badKubeconfig])
        try f.policy("= 999")
        try drctl(["verify", "n8n-prod", "--mode", "cluster", "--kubeconfig", f.kubeconfig, "--policies", f.policies])
        try f.policy("= 42")
        #expect(outputs.contains { $0.0.hasPrefix("drctl verify n8n-prod --mode cluster --kubeconfig \(f.kubeconfig) --policies \(f.policies) -o json (exit 0)") },
                "the cluster drill ran (and read the superuser password): \(outputs.map(\.0))")

        // drctl serve: metrics, API, page; then a crash (SIGSEGV) and its report.
        // spawn clears the signal mask: a test's worker thread blocks signals, and a blocked
        // SIGSEGV sent with kill() would never arrive.
        let svc = try ServeTests.Service(["--policies", f.policies, "--scratch-dir", scratch, "--sync-schedule", "0 0 1 1 *"],
                                         env: f.env, log: f.work + "/serve.log")
        usleep(1_000_000)
        for path in ["/metrics", "/api/v1/workloads", "/api/v1/drills", "/api/v1/workloads/n8n-prod/backups", "/"] {
            outputs.append(("GET \(path)", try svc.get(path).1))
        }
        // A SIGSEGV sent (rather than a real fault) is reported and then survived: wait for the
        // report, then kill.
        kill(svc.pid, SIGSEGV)
        waitUntil(200, every: 50_000) { svc.text().contains("Backtrace took") }
        kill(svc.pid, SIGKILL)
        _ = try reap(svc.pid)
        #expect(svc.text().contains("crashed"), "a crash report was written: \(svc.text().suffix(500))")
        outputs.append(("drctl serve log and crash report", svc.text()))

        // What drctl stored: evidence objects in the bucket, the catalog file.
        var evidence: [String] = []
        try f.s3.listObjects(bucket: f.bucket, prefix: "drctl/") { evidence += $0.objects.map(\.key) }
        #expect(!evidence.isEmpty)
        for key in evidence {
            var body: [UInt8] = []
            try f.s3.getObject(S3URL(bucket: f.bucket, key: key)) { body += $0 }
            outputs.append(("s3://\(f.bucket)/\(key)", String(decoding: body, as: UTF8.self)))
        }
        for file in ["catalog.sqlite", "catalog.sqlite-wal"] {
            if let data = FileManager.default.contents(atPath: f.work + "/data/" + file) {
                outputs.append((file, String(decoding: data, as: UTF8.self)))
            }
        }

        let keyLines = try String(contentsOfFile: f.api.file("client.key"), encoding: .utf8).split(separator: "\n")
            .filter { !$0.hasPrefix("-----") && $0.count >= 16 }.map(String.init)
        let secrets: [(String, String)] = [("S3 secret key", rgw.secretKey), ("wrong S3 secret", wrongSecret), ("bearer token", f.api.token),
                                           ("wrong bearer token", badToken), ("superuser password", password)]
            + keyLines.map { ("client key", $0) }
        #expect(outputs.count > 25)
        for (what, text) in outputs {
            for (name, secret) in secrets {
                #expect(!text.contains(secret) && !text.contains(URIEncoding.encode(secret)), "\(name) in \(what)")
            }
        }
        // The failures were reported, just without their secrets.
        let wrong = outputs.first { $0.0.hasPrefix("drctl s3 ls") && $0.0.hasSuffix("(exit 1)") }?.1 ?? ""
        #expect(wrong.contains("SignatureDoesNotMatch"), "\(wrong)")
        let unauthorized = outputs.first { $0.0.contains(badKubeconfig) && $0.0.hasPrefix("drctl apply") }?.1 ?? ""
        #expect(unauthorized.contains("401") || unauthorized.contains("Unauthorized"), "\(unauthorized)")
    }
}

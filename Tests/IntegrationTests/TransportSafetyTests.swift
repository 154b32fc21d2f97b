import Foundation
import Testing
import ObjectStore
import HTTP
import TestSupport

/// The policy's CA is what drctl trusts for that store (not only `--ca-bundle`), and every
/// transport that protects nothing is named once per run.
@Suite struct TransportSafetyTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    @Test func thePolicysCABundleIsTrustedByDrctlItself() throws {
        let tls = try #require(rgw.tlsEndpoint), ca = try #require(rgw.caBundle)
        let s3 = try rgw.client(endpoint: tls) { $0.tls = TLSOptions(caBundle: ca) }
        let bucket = try rgw.bucket(s3, "policyca")
        try s3.putObject(S3URL(bucket: bucket, key: "cnpg/db/base/20261101T000000/backup.info"), bytes: Array("status=DONE\n".utf8))
        let work = tempPath("policyca")
        try FileManager.default.createDirectory(atPath: work + "/policies", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: work + "/secrets/rgw-ca", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        try FileManager.default.copyItem(atPath: ca, toPath: work + "/secrets/rgw-ca/ca.crt")
        try """
            apiVersion: drctl.dev/v1alpha1
            kind: ObjectStore
            metadata: {name: rgw}
            spec:
              endpoint: \(tls)
              bucket: \(bucket)
              caBundle: {secretName: rgw-ca, key: ca.crt}
              credentials: {secretName: s3}
              prefixes: {velero: velero, barman: cnpg, drctl: drctl}
            """.write(toFile: work + "/policies/store.yaml", atomically: true, encoding: .utf8)
        var env = rgw.environment
        env.removeValue(forKey: "AWS_ENDPOINT_URL")
        env["DRCTL_DATA_DIR"] = work + "/data"
        let sync = ["catalog", "sync", "--policies", work + "/policies", "--catalog", work + "/catalog.sqlite"]

        // The Secret mounted where drctl looks (DRCTL_SECRETS_DIR here, /etc/drctl/secrets in deploy/).
        env["DRCTL_SECRETS_DIR"] = work + "/secrets"
        var (st, out) = try run(drctlBinary, sync, env: env)
        #expect(st == 0 && !out.contains("certificate"), "\(out)")
        // Not mounted: an error naming the field and the path, before any request.
        env["DRCTL_SECRETS_DIR"] = work + "/nothing"
        (st, out) = try run(drctlBinary, sync, env: env)
        #expect(st != 0 && out.contains("spec.caBundle is key ca.crt of Secret rgw-ca, which drctl reads from \(work)/nothing/rgw-ca/ca.crt"), "\(out)")
        // --ca-bundle still wins.
        (st, out) = try run(drctlBinary, sync + ["--ca-bundle", ca], env: env)
        #expect(st == 0, "\(out)")
    }

    @Test func insecureTransportsAreWarnedAboutOncePerRun() throws {
        let tls = try #require(rgw.tlsEndpoint)
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "insecure")
        for i in 0..<3 { try s3.putObject(S3URL(bucket: bucket, key: "k\(i)"), bytes: [1]) }
        let (st, out) = try run(drctlBinary, ["s3", "ls", "--endpoint", tls, "--insecure", "s3://\(bucket)/"], env: rgw.environment)
        #expect(st == 0, "\(out)")
        #expect(out.components(separatedBy: "drctl: warning: --insecure: the object store's TLS certificate is not checked").count == 2, "once: \(out)")

        // A kubeconfig that skips verification, and one that sends its token over http://.
        let api = try KubeAPI()
        let skip = api.file("kubeconfig-skip")
        try """
            apiVersion: v1
            kind: Config
            current-context: test
            clusters: [{name: test, cluster: {server: \(api.server), insecure-skip-tls-verify: true}}]
            users: [{name: u, user: {token: \(api.token)}}]
            contexts: [{name: test, context: {cluster: test, user: u}}]
            """.write(toFile: skip, atomically: true, encoding: .utf8)
        let policies = packageRoot.appendingPathComponent("policies").path
        var (kst, kout) = try run(drctlBinary, ["apply", policies, "--kubeconfig", skip, "--dry-run=server"])
        #expect(kout.components(separatedBy: "insecure-skip-tls-verify is set: the API server's certificate is not checked").count == 2, "once: \(kst) \(kout)")
        #expect(!kout.contains(api.token))
        let plain = api.file("kubeconfig-http")
        try String(contentsOfFile: skip, encoding: .utf8).replacingOccurrences(of: "https://", with: "http://")
            .replacingOccurrences(of: ", insecure-skip-tls-verify: true", with: "").write(toFile: plain, atomically: true, encoding: .utf8)
        (kst, kout) = try run(drctlBinary, ["apply", policies, "--kubeconfig", plain, "--dry-run=server"])
        #expect(kout.contains("is plain http:// and drctl sends it a bearer token: anyone on the path can read the token"), "\(kout)")
        #expect(!kout.contains(api.token))
    }
}

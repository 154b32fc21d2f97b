import Foundation
import SigV4
import Hashing
import Logging
import HTTP
import ObjectStore
import TestSupport


nonisolated(unsafe) private var rgwDirToStop: String?

/// A real Ceph RGW, started once per test run with `scripts/rgw-up.sh` on a free port (or the
/// one named by `DRCTL_TEST_RGW_DIR`, already running), stopped when the run exits.
final class RGW: Sendable {
    let endpoint: String
    let port: Int
    let accessKey: String
    let secretKey: String
    /// HTTPS endpoint (https://localhost:PORT) and the CA that signed its certificate.
    let tlsEndpoint: String?
    let caBundle: String?

    private static let shared: Result<RGW, FixtureError> = Result { try RGW.start() }.mapError { FixtureError(description: "\($0)") }

    static func get() throws -> RGW { try shared.get() }

    private init(env: [String: String]) throws {
        guard let ep = env["AWS_ENDPOINT_URL"], let ak = env["AWS_ACCESS_KEY_ID"], let sk = env["AWS_SECRET_ACCESS_KEY"],
              let port = URLComponents(string: ep)?.port else {
            throw FixtureError(description: "RGW env file is incomplete")
        }
        endpoint = ep
        self.port = port
        accessKey = ak
        secretKey = sk
        tlsEndpoint = env["DRCTL_RGW_TLS_ENDPOINT"]
        caBundle = env["DRCTL_RGW_CA"]
    }

    private static func start() throws -> RGW {
        if let dir = ProcessInfo.processInfo.environment["DRCTL_TEST_RGW_DIR"] {
            return try RGW(env: readEnvFile("\(dir)/env"))
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-test-rgw-\(getpid())").path
        let port = try freePort()
        var env = ProcessInfo.processInfo.environment
        env["DRCTL_RGW_TLS_PORT"] = String(try freePort())
        let (status, output) = try run(packageRoot.appendingPathComponent("scripts/rgw-up.sh").path, [dir, String(port)], env: env)
        rgwDirToStop = dir
        atexit {
            if let d = rgwDirToStop { _ = try? run(packageRoot.appendingPathComponent("scripts/rgw-down.sh").path, [d, "--purge"]) }
        }
        guard status == 0 else { throw FixtureError(description: "scripts/rgw-up.sh failed (\(status)): \(output)") }
        return try RGW(env: readEnvFile("\(dir)/env"))
    }

    /// A second RGW of the test's own, for a test that stops it (the shared one serves every
    /// other test); `stop()` ends it and removes its data.
    static func startPrivate() throws -> RGW {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-test-rgw-own\(UInt32.random(in: 0...UInt32.max))-\(getpid())").path
        let (status, output) = try run(packageRoot.appendingPathComponent("scripts/rgw-up.sh").path, [dir, String(try freePort())])
        guard status == 0 else { throw FixtureError(description: "scripts/rgw-up.sh failed (\(status)): \(output)") }
        let rgw = try RGW(env: readEnvFile("\(dir)/env"))
        rgw.privateDirectory = dir
        return rgw
    }

    nonisolated(unsafe) private(set) var privateDirectory: String?

    func stop() {
        if let d = privateDirectory { _ = try? run(packageRoot.appendingPathComponent("scripts/rgw-down.sh").path, [d, "--purge"]) }
    }

    /// This process's environment plus what drctl, barman-cloud and the AWS tools need to reach
    /// the RGW: endpoint, keys, region.
    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["AWS_ENDPOINT_URL"] = endpoint
        env["AWS_ACCESS_KEY_ID"] = accessKey
        env["AWS_SECRET_ACCESS_KEY"] = secretKey
        env["AWS_DEFAULT_REGION"] = "us-east-1"
        return env
    }

    func client(endpoint override: String? = nil, secret: String? = nil, retry: RetryPolicy = RetryPolicy(maxAttempts: 5, baseDelay: 0.01, maxDelay: 0.1),
                addressing: S3Endpoint.Addressing? = nil, configure: (inout S3Configuration) -> Void = { _ in }) throws -> S3Client {
        let creds = Credentials(accessKeyID: accessKey, secretAccessKey: secret ?? secretKey)
        var config = S3Configuration(endpoint: try S3Endpoint(url: override ?? endpoint, addressing: addressing), region: "us-east-1", credentials: creds)
        config.retry = retry
        configure(&config)
        var logger = Logger(label: "test")
        logger.logLevel = .error
        return S3Client(config: config, logger: logger)
    }

    /// A policy document naming this RGW and `bucket` (prefixes velero, cnpg, drctl), for tests
    /// that run drctl from policies.
    /// `extra`: more lines of the spec, e.g. "  objectLock: {mode: COMPLIANCE, retention: 7d}\n".
    func objectStorePolicy(bucket: String, secretName: String = "s3", extra: String = "") -> String {
        """
        apiVersion: drctl.dev/v1alpha1
        kind: ObjectStore
        metadata: {name: rgw}
        spec:
          endpoint: \(endpoint)
          bucket: \(bucket)
          credentials: {secretName: \(secretName)}
          prefixes: {velero: velero, barman: cnpg, drctl: drctl}
        \(extra)---

        """
    }

    /// This RGW's keys where drctl reads a mounted credentials Secret: `dir/ACCESS_KEY_ID` and
    /// `dir/SECRET_ACCESS_KEY` (`$DRCTL_SECRETS_DIR/<secretName>`).
    func writeKeys(to dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try accessKey.write(toFile: dir + "/ACCESS_KEY_ID", atomically: true, encoding: .utf8)
        try secretKey.write(toFile: dir + "/SECRET_ACCESS_KEY", atomically: true, encoding: .utf8)
    }

    /// ObjectStore "offsite" on this RGW: a copy's store, with its own keys in Secret `secretName`.
    /// `extra`: more fields of its spec, e.g. "pathStyle: true, ".
    func offsitePolicy(bucket: String, secretName: String, extra: String = "") -> String {
        """
        apiVersion: drctl.dev/v1alpha1
        kind: ObjectStore
        metadata: {name: offsite}
        spec: {endpoint: "\(endpoint)", bucket: \(bucket), \(extra)credentials: {secretName: \(secretName)}}

        """
    }

    /// A BackupPolicy `name` on the store of `objectStorePolicy`, its one namespace of the same
    /// name, with `backups` (its cnpg or velero section) and `spec`: more lines of its spec
    /// (indented two spaces), e.g. a drill.
    static func backupPolicy(_ name: String, rpo: String, rto: String, backups: String, spec: String) -> String {
        """
        apiVersion: drctl.dev/v1alpha1
        kind: BackupPolicy
        metadata: {name: \(name)}
        spec:
          objectStore: rgw
          namespaces: [\(name)]
          objectives: {rpo: \(rpo), rto: \(rto)}

        """ + backups + spec
    }

    /// A BackupPolicy (`name`, "app" unless named) for one CNPG cluster.
    static func appPolicy(cluster: String, name: String = "app", rpo: String = "1h", rto: String = "1h", spec: String = "") -> String {
        backupPolicy(name, rpo: rpo, rto: rto, backups: """
              cnpg:
                - cluster: \(cluster)
                  baseBackup: {schedule: "0 0 4 * * *"}
                  retention: 7d

            """, spec: spec)
    }

    /// A namespace-only BackupPolicy (`name`, a daily Velero schedule).
    static func namespacePolicy(_ name: String = "n8n-prod", rpo: String = "24h", rto: String = "1h", spec: String = "") -> String {
        backupPolicy(name, rpo: rpo, rto: rto, backups: """
              velero:
                volumes: none
                schedules: [{tier: daily, schedule: "30 2 * * *", retention: 7d}]

            """, spec: spec)
    }

    /// The keys as shell assignments, for commands PostgreSQL runs through a shell.
    var shellCredentials: String {
        "AWS_ACCESS_KEY_ID=\(accessKey) AWS_SECRET_ACCESS_KEY='\(secretKey)' AWS_DEFAULT_REGION=us-east-1"
    }

    /// An archive_command that runs real barman-cloud-wal-archive (gzip) into `dest` as `server`.
    func barmanArchiveCommand(dest: String, server: String) -> String {
        "\(shellCredentials) /opt/drctl-barman/bin/barman-cloud-wal-archive --endpoint-url \(endpoint) --gzip \(dest) \(server) %p"
    }

    /// Waits until barman-cloud-wal-archive has put `segment` of `server` (under `root`) into the bucket.
    func waitArchived(_ segment: String, s3: S3Client, bucket: String, root: String = "cnpg", server: String = "app-db") throws {
        for _ in 0..<120 {
            var found = false
            try s3.listObjects(bucket: bucket, prefix: "\(root)/\(server)/wals/\(segment.prefix(16))/\(segment)") { if !$0.objects.isEmpty { found = true } }
            if found { return }
            usleep(250_000)
        }
        throw FixtureError(description: "\(segment) was not archived within 30 s")
    }

    /// A new bucket with a unique name for one test.
    func bucket(_ client: S3Client, _ name: String) throws -> String {
        let b = "\(name)-\(UInt32.random(in: 0...UInt32.max))"
        try client.createBucket(b)
        return b
    }
}

/// A directory for one test's PostgreSQL servers, named after this process so that scripts/test
/// can stop what a killed run left in it; the postgres user may enter it, nobody may list it.
func testWorkDirectory() throws -> String {
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-test-pg-\(getpid())-\(UUID().uuidString.prefix(6))").path
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    chmod(work, 0o711)
    return work
}

func readEnvFile(_ path: String) throws -> [String: String] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    var env: [String: String] = [:]
    for line in text.split(separator: "\n") where line.hasPrefix("export ") {
        let kv = line.dropFirst(7).split(separator: "=", maxSplits: 1)
        guard kv.count == 2 else { continue }
        env[String(kv[0])] = String(kv[1]).trimmingCharacters(in: CharacterSet(charactersIn: "'"))
    }
    return env
}

func freePort() throws -> Int {
    let (status, out) = try run("/usr/bin/env", ["python3", "-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"])
    guard status == 0, let p = Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw FixtureError(description: "no free port") }
    return p
}

/// `scripts/faultproxy.py` in front of the RGW; stops when this object goes away.
final class FaultProxy {
    let pid: pid_t
    let port: Int
    var endpoint: String { "http://127.0.0.1:\(port)" }
    let control: CurlTransport

    init(upstreamPort: Int) throws {
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-proxy-\(UUID().uuidString)").path
        pid = try spawn("/usr/bin/python3", [packageRoot.appendingPathComponent("scripts/faultproxy.py").path,
                                             "--upstream", "127.0.0.1:\(upstreamPort)", "--port-file", portFile])
        var port: Int?
        for _ in 0..<200 {
            if let s = try? String(contentsOfFile: portFile, encoding: .utf8), let p = Int(s) { port = p; break }
            usleep(25_000)
        }
        unlink(portFile)
        guard let port else { stop(pid); throw FixtureError(description: "fault proxy did not start") }
        self.port = port
        control = CurlTransport()
    }

    deinit { stop(pid) }

    /// Queues `count` faults of `mode` for the next requests (of `method`, if given).
    func inject(_ mode: String, count: Int = 1, method: String? = nil, afterBytes: Int? = nil, seconds: Double? = nil) throws {
        var plan: [String: Any] = ["mode": mode, "count": count]
        if let method { plan["match"] = method }
        if let afterBytes { plan["after_bytes"] = afterBytes }
        if let seconds { plan["seconds"] = seconds }
        let body = try JSONSerialization.data(withJSONObject: plan)
        _ = try control.perform(HTTPRequest(method: "POST", url: "\(endpoint)/__fault", headers: [], body: .bytes(Array(body))),
                                handler: CollectingHandler())
    }

    /// Requests the proxy has seen: (method, path, Range header).
    func requests() throws -> [(method: String, path: String, range: String?)] {
        let h = CollectingHandler()
        _ = try control.perform(HTTPRequest(method: "GET", url: "\(endpoint)/__fault", headers: []), handler: h)
        let obj = try JSONSerialization.jsonObject(with: Data(h.data)) as! [String: Any]
        return (obj["requests"] as! [[Any]]).map { ($0[0] as! String, $0[1] as! String, $0[2] as? String) }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
func pseudoRandomFile(_ path: String, size: Int, seed: UInt64) throws {
    _ = FileManager.default.createFile(atPath: path, contents: nil)
    let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    defer { try? fh.close() }
    var state = seed | 1
    var remaining = size
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    while remaining > 0 {
        let n = min(remaining, buf.count)
        buf.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in 0..<(n + 7) / 8 where i < words.count {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                words[i] = state
            }
        }
        fh.write(Data(buf[0..<n]))
        remaining -= n
    }
}

func sha256(file path: String) throws -> String {
    let fh = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
    defer { try? fh.close() }
    var d = Digest(.sha256)
    while let chunk = try fh.read(upToCount: 1 << 20), !chunk.isEmpty { d.update(chunk) }
    return d.finish().hex
}


func sha256Hex(_ bytes: [UInt8]) -> String {
    var d = Digest(.sha256)
    d.update(Data(bytes))
    return d.finish().hex
}

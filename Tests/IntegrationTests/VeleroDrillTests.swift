import Foundation
import Testing
import ObjectStore
import TestSupport

/// The host drill's Velero part against Velero-format backups in the real RGW: the restore
/// point's manifests must parse and match its resource list.
@Suite struct VeleroDrillTests {
    let rgw: RGW
    init() throws { rgw = try RGW.get() }

    static func gzip(_ text: String) throws -> [UInt8] {
        let path = tempPath("list")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path); unlink(path + ".gz") }
        let (st, out) = try run("/bin/gzip", ["-f", path])
        #expect(st == 0, "\(out)")
        return try Array(Data(contentsOf: URL(fileURLWithPath: path + ".gz")))
    }

    @Test func manifestsAreCheckedAgainstTheResourceList() throws {
        let s3 = try rgw.client()
        let bucket = try rgw.bucket(s3, "velerodrill")
        let name = VeleroBucketTests.scheduledName()
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(name)/\(name).tar.gz"), bytes: VeleroBucketTests.tarball())
        try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(name)/velero-backup.json"),
                         bytes: VeleroBucketTests.backupJSON(name, phase: "Completed"))
        func list(_ json: String) throws {
            try s3.putObject(S3URL(bucket: bucket, key: "velero/backups/\(name)/\(name)-resource-list.json.gz"), bytes: Self.gzip(json))
        }
        let dir = tempPath("velero-drill")
        try FileManager.default.createDirectory(atPath: dir + "/policies", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try (rgw.objectStorePolicy(bucket: bucket) + RGW.namespacePolicy(spec: """
              drill:
                schedule: "0 6 * * *"
                checks:
                  - resourceCount: {kind: Deployment, min: 1}
            """)).write(toFile: dir + "/policies/p.yaml", atomically: true, encoding: .utf8)
        var env = rgw.environment
        env.removeValue(forKey: "AWS_ENDPOINT_URL")
        env["DRCTL_DATA_DIR"] = dir + "/data"
        // Targets around the backup, derived from its start (never a fixed date).
        let start = VeleroBucketTests.recentStart
        let after = VeleroBucketTests.rfc3339(start.addingTimeInterval(1800)), before = VeleroBucketTests.rfc3339(start.addingTimeInterval(-5400))
        func verify() throws -> (Int32, String) {
            try run(drctlBinary, ["verify", "n8n-prod", "--policies", dir + "/policies", "--scratch-dir", dir + "/scratch", "--at", after], env: env)
        }

        try list(#"{"apps/v1/Deployment":["n8n-prod/n8n"]}"#)
        var (st, out) = try verify()
        #expect(st == 0 && out.contains("1 items parse and match the resource list") && out.contains("[passed] resourceCount Deployment >= 1"), "\(out)")

        // The list names an item the tarball lacks: the drill fails and names it.
        try list(#"{"apps/v1/Deployment":["n8n-prod/n8n"],"v1/Secret":["n8n-prod/n8n-encryption-key"]}"#)
        (st, out) = try verify()
        #expect(st == 1 && out.contains("missing from the tarball v1/Secret n8n-prod/n8n-encryption-key"), "\(out)")

        // A target before the backup completed: no restore point, named.
        (st, out) = try run(drctlBinary, ["verify", "n8n-prod", "--policies", dir + "/policies", "--scratch-dir", dir + "/scratch", "--at", before], env: env)
        #expect(st == 1 && out.contains("no completed Velero backup"), "\(out)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: dir + "/scratch")) ?? []).isEmpty)
    }
}

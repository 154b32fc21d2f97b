import Foundation
import Testing
import TestSupport

/// Every input in the committed fuzz corpus (Tests/Fuzz/corpus, including each crash libFuzzer
/// found and drctl now survives) goes through its parser again in the ordinary build, with the
/// fuzz targets' invariants checked. scripts/fuzz runs libFuzzer itself.
struct FuzzCorpusTests {
    static let targets = ["s3-xml", "policy", "tar", "gzip", "backup-info", "velero-backup", "kubeconfig", "record"]

    @Test(arguments: targets)
    func corpusReplaysWithoutCrashOrBrokenInvariant(_ target: String) throws {
        let dir = packageRoot.appendingPathComponent("Tests/Fuzz/corpus/\(target)").path
        let inputs = try FileManager.default.contentsOfDirectory(atPath: dir).count
        // A temporary directory of its own: the tar target checks nothing appears beside its sandbox.
        let tmp = tempPath("fuzz-replay")
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        var env = ProcessInfo.processInfo.environment
        env["TMPDIR"] = tmp
        let (rc, out) = try run(builtProgram("drctl-fuzz"), [target, dir], env: env)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? []).isEmpty, "the replay left files in its TMPDIR")
        #expect(rc == 0, "\(out)")
        #expect(inputs > 0 && out.contains("\(target): \(inputs) inputs replayed"), "\(out)")
    }
}

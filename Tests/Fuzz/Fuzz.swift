import Codecs
import Foundation
import Support
import Kube
import Layout
import ObjectStore
import Policy
import Records
import Render

/// Each parser of outside input, behind one libFuzzer entry point. Besides "no crash, leak or
/// hang", each target checks what must hold for any input (`require`): a decoder's output
/// stays within its limit, chunking does not change a result, nothing lands outside the tar root.
enum FuzzTarget: String, CaseIterable {
    case s3XML = "s3-xml", policy, tar, gzip, backupInfo = "backup-info", veleroBackup = "velero-backup", kubeconfig, record

    func run(_ data: [UInt8]) {
        switch self {
        case .s3XML: s3XML(data)
        case .policy: policy(data)
        case .tar: tar(data)
        case .gzip: gzip(data)
        case .backupInfo:
            let text = String(decoding: data, as: UTF8.self)
            if let info = try? BackupInfo(parsing: text) {
                _ = (info.status, info.beginTime, info.endTime, info.beginWAL, info.endWAL, info.beginLSN, info.endLSN, info.timeline, info.segmentSize)
            }
            _ = try? TimelineHistory(timeline: 2, parsing: text)
            for line in text.split(separator: "\n") { _ = WALSegment(name: line); _ = LSN(parsing: String(line)) }
        case .veleroBackup:
            if let b = try? VeleroBackup.decode(Data(data)) { _ = (b.phase, b.isTerminal, b.schedule, b.covers(namespace: "n8n")) }
        case .record:
            // A record read back from the bucket: split from its seal and checked, never trusted
            // unless the MAC over exactly these bytes holds; a changed byte never still verifies.
            let (value, how) = RecordSeal.open(data, as: FuzzRecord.self, kind: "fuzz", name: "fuzz/1.json", keys: FuzzRecord.keys)
            _ = value
            if how.isAuthentic, let i = data.indices.last {
                var changed = data
                changed[i / 2] ^= 0x01
                require(!RecordSeal.open(changed, as: FuzzRecord.self, kind: "fuzz", name: "fuzz/1.json", keys: FuzzRecord.keys).authenticity.isAuthentic,
                        "a changed sealed record still verifies")
            }
        case .kubeconfig:
            // Files a kubeconfig names are answered from memory: a fuzzed name must not read the disk.
            _ = try? KubeConfig.parse(text: String(decoding: data, as: UTF8.self), file: "/fuzz/kubeconfig", context: nil) { path in
                path.hasSuffix(".crt") ? Array("-----BEGIN CERTIFICATE-----\n".utf8) : nil
            }
        }
    }

    func s3XML(_ data: [UInt8]) {
        if let page = try? S3Responses.listPage(data) {
            require(page.objects.allSatisfy { $0.size >= 0 }, "a listing entry with a negative size was accepted")
            require(!page.isTruncated || !(page.nextContinuationToken ?? "").isEmpty, "a truncated page without a token was accepted")
        }
        _ = try? S3Responses.multipartUploads(data)
        _ = try? S3Responses.uploadID(data)
        _ = try? S3Responses.deleteFailures(data, operation: "fuzz")
        _ = S3Responses.errorInSuccess(data, operation: "fuzz")
        if let lock = try? S3Responses.objectLockConfiguration(data) {
            require((lock.defaultRetentionSeconds ?? 0) >= 0, "a negative default retention was accepted")
            _ = lock.description
        }
        // Dates from response headers (Last-Modified, Object Lock's retain-until).
        let head = String(decoding: data.prefix(80), as: UTF8.self)
        _ = (HTTPDate.parse(head), RFC3339.parse(head))
        let error = S3Error.decode(status: 403, body: data, headers: [:], operation: "fuzz")
        _ = error.description
    }

    func policy(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        let diagnostics = Diagnostics()
        var set = PolicySet()
        PolicyLoader.load(text: text, file: "fuzz.yaml", into: &set, diagnostics: diagnostics)
        Linter.lint(set, into: diagnostics)
        let lines = PolicyLoader.yamlLines(text).count
        for d in diagnostics.all {
            require(d.location.line >= 1 && d.location.line <= lines, "diagnostic outside the file: \(d)")
        }
        if !diagnostics.hasErrors {
            _ = Renderer.render(set, policyFiles: [("fuzz.yaml", text)], options: RenderOptions())
        }
    }

    func tar(_ data: [UInt8]) {
        // Deep inside the sandbox, so a ladder of links that climbs out lands in it, where it is seen.
        let root = Sandbox.shared.path + "/" + Sandbox.ancestors.joined(separator: "/") + "/root"
        defer { try? FileManager.default.removeItem(atPath: Sandbox.shared.path + "/" + Sandbox.ancestors[0]) }
        guard let x = try? TarExtractor(root: root) else { return }
        // The first byte picks the chunk size, so headers split across reads are exercised too.
        let chunk = data.isEmpty ? 1 : Int(data[0]) * 7 + 1
        let body = data.dropFirst()
        var ok = true
        var i = body.startIndex
        while ok, i < body.endIndex {
            let end = min(i + chunk, body.endIndex)
            ok = (try? body[i..<end].withUnsafeBytes { try x.feed($0) }) != nil
            i = end
        }
        if ok { _ = try? x.finish() }
        Sandbox.shared.requireOnly(root: root)
    }

    func gzip(_ data: [UInt8]) {
        let limit = 1 << 20
        let whole = Result { try Gzip.decompress(data, limit: limit) }
        if case .success(let out) = whole { require(out.count <= limit, "output beyond the limit") }
        // The same input in chunks of the first byte's size must give the same answer.
        let chunk = data.isEmpty ? 1 : Int(data[0]) + 1
        var streamed: [UInt8] = []
        let parts = Result { () throws -> [UInt8] in
            let s = try GzipStream(limit: Int64(limit))
            var i = 0
            while i < data.count {
                let end = min(i + chunk, data.count)
                try data[i..<end].withUnsafeBytes { try s.feed($0) { streamed += $0 } }
                i = end
            }
            try s.finish()
            return streamed
        }
        switch (whole, parts) {
        case (.success(let a), .success(let b)): require(a == b, "chunked decoding differs from whole decoding")
        case (.failure, .failure): break
        default: require(false, "chunked and whole decoding disagree on success: \(whole) vs \(parts)")
        }
    }
}

/// A record shaped like drctl's (nested objects, dates, numbers), sealed with a fixed key.
struct FuzzRecord: Codable {
    var job: String?
    var at: Date?
    var objects: [String: Int64]?
    var ratio: Double?
    static let keys = RecordKeyring(keys: [RecordKey(id: "fuzz", secret: [UInt8](repeating: 9, count: 32))])
}

func require(_ condition: Bool, _ what: @autoclosure () -> String) {
    if !condition { fatalError("invariant broken: \(what())") }
}

/// The per-process directory the tar target extracts into; nothing else may appear in it.
final class Sandbox: @unchecked Sendable {
    static let shared = Sandbox()
    let path: String
    private init() {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        path = "\(base)/drctl-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: Sandbox.shared.path) }
    }

    /// The directories between the sandbox and the tar root.
    static let ancestors = ["s1", "s2", "s3", "s4", "s5", "s6"]

    /// Fails when an entry left `root`: anything in the whole sandbox that is neither the root's
    /// chain of directories nor under the root (walked without following links), anything new
    /// beside the sandbox, or a link under the root that resolves outside it.
    func requireOnly(root: String) {
        var chain = Set<String>()
        var p = path
        for a in Self.ancestors { p += "/" + a; chain.insert(p) }
        func walk(_ dir: String) {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                let entry = dir + "/" + name
                if entry == root || entry.hasPrefix(root + "/") { continue }
                require(chain.contains(entry), "the tar extractor wrote outside its root: \(entry)")
                walk(entry)
            }
        }
        walk(path)
        let base = (path as NSString).deletingLastPathComponent
        let beside = (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []
        require(beside.allSatisfy { $0.hasPrefix("drctl-fuzz-") }, "the tar extractor wrote beside the sandbox: \(beside)")
        guard let realRoot = realpath(root, nil).map({ p in defer { free(p) }; return String(cString: p) }) else { return }
        for case let rel as String in FileManager.default.enumerator(atPath: root) ?? NSEnumerator() {
            guard let r = realpath(root + "/" + rel, nil) else { continue }   // a dangling link points nowhere
            let resolved = String(cString: r)
            free(r)
            require(resolved == realRoot || resolved.hasPrefix(realRoot + "/"), "\(rel) resolves outside the root: \(resolved)")
        }
    }
}

#if FUZZING
// libFuzzer's driver, entered from main (SwiftPM renames an executable's main, so libFuzzer's own
// main is not used). The target is chosen by DRCTL_FUZZ_TARGET (see scripts/fuzz).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

nonisolated(unsafe) var selected = FuzzTarget.s3XML

@main
struct Fuzz {
    static func main() {
        let name = ProcessInfo.processInfo.environment["DRCTL_FUZZ_TARGET"] ?? ""
        guard let t = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(Data("set DRCTL_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
            exit(2)
        }
        selected = t
        var argc = CommandLine.argc
        var argv = Optional(CommandLine.unsafeArgv)
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            selected.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
            return 0
        })
    }
}
#else
/// Without libFuzzer the same binary replays inputs: `drctl-fuzz <target> <file|dir>...`.
/// The test suite replays the committed corpus this way on every run.
@main
struct Replay {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        guard let name = args.first, let target = FuzzTarget(rawValue: name), args.count > 1 else {
            FileHandle.standardError.write(Data("usage: drctl-fuzz <\(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|"))> <file|directory>...\n".utf8))
            exit(2)
        }
        var count = 0
        for path in args.dropFirst() {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
                FileHandle.standardError.write(Data("drctl-fuzz: \(path): no such file or directory\n".utf8))
                exit(2)
            }
            let files = isDir.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 }
                : [path]
            for f in files {
                guard let d = FileManager.default.contents(atPath: f) else { continue }
                target.run(Array(d))
                count += 1
            }
        }
        print("\(target.rawValue): \(count) inputs replayed")
    }
}
#endif

import ArgumentParser
import Foundation
import Policy
import Render
import Paths

struct RenderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Turn policies into manifests for Velero, CNPG, Prometheus and drctl (kustomize-ready).",
        discussion: """
            Output is deterministic: the same policies give byte-identical files. Refuses to render \
            policies that drctl lint rejects. With --check, compares instead of writing and exits 1 \
            if the output directory differs (drift).
            """)

    @Argument(help: ArgumentHelp("Policy files or directories.", valueName: "path")) var paths: [String] = ["policies"]
    @Option(help: ArgumentHelp("Directory to write into.", valueName: "dir")) var out: String
    @Option(help: "Base URL of the runbooks that alerts link to (<url>/<AlertName>.md).")
    var runbookBaseURL = RenderOptions().runbookBaseURL
    @Flag(help: "Do not write; exit 1 if the output directory differs from what would be rendered.") var check = false
    @Flag(help: "Also warn, as drctl lint --measured does, about base-backup schedules that cannot meet the RTO at the measured rates (reads the stores).")
    var measured = false
    @OptionGroup var s3: S3Options
    @Option(help: ArgumentHelp("With --measured: the catalog to read the stores' backups from instead of the stores.", valueName: "file")) var catalog: String?

    func run() throws {
        let diags = Diagnostics()
        let set = PolicyLoader.load(paths: paths, diagnostics: diags)
        Linter.lint(set, into: diags)
        if diags.hasErrors {
            for d in diags.sorted { FileHandle.standardError.write(Data("\(d)\n".utf8)) }
            FileHandle.standardError.write(Data("drctl: error: the policies have errors (see above); nothing rendered\n".utf8))
            throw Exit.failure
        }
        if measured {
            try measuredScheduleWarnings(set, s3: s3, catalog: catalog, into: diags)
            for d in diags.sorted where d.severity != .error { FileHandle.standardError.write(Data("\(d)\n".utf8)) }
        }
        let rendered = try renderPolicies(set, paths: paths, options: RenderOptions(runbookBaseURL: runbookBaseURL))
        var drift: [String] = []
        for file in rendered {
            let path = (out as NSString).appendingPathComponent(file.path)
            let text = try file.yaml()
            if check {
                if (try? String(contentsOfFile: path, encoding: .utf8)) != text { drift.append(file.path) }
                continue
            }
            try FileManager.default.createDirectory(atPath: Paths.parent(path), withIntermediateDirectories: true)
            if (try? String(contentsOfFile: path, encoding: .utf8)) != text {
                try text.write(toFile: path, atomically: true, encoding: .utf8)
                print("wrote \(path)")
            }
        }
        // Files drctl rendered before but would not now (a removed policy).
        let expected = Set(rendered.map(\.path))
        let existing = (FileManager.default.enumerator(atPath: out)?.compactMap { $0 as? String } ?? []).filter { $0.hasSuffix(".yaml") }
        let stale = existing.filter { !expected.contains($0) }.sorted()
        if check {
            drift += stale
            if !drift.isEmpty {
                for d in drift.sorted() { print("differs: \((out as NSString).appendingPathComponent(d))") }
                FileHandle.standardError.write(Data("drctl: error: \(out) is out of date; run drctl render --out \(out)\n".utf8))
                throw Exit.failure
            }
            print("\(out) is up to date (\(rendered.count) files)")
        } else {
            for s in stale { print("stale (not rendered any more; remove it if no longer wanted): \((out as NSString).appendingPathComponent(s))") }
        }
    }
}

/// Renders loaded policies; the policy files themselves go into drctl's ConfigMap.
func renderPolicies(_ set: PolicySet, paths: [String], options: RenderOptions) throws -> [RenderedFile] {
    var policyFiles: [(String, String)] = []
    for p in paths {
        var isDir: ObjCBool = false
        FileManager.default.fileExists(atPath: p, isDirectory: &isDir)
        let files = isDir.boolValue ? (FileManager.default.enumerator(atPath: p)?.compactMap { $0 as? String } ?? [])
            .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.map { (p as NSString).appendingPathComponent($0) } : [p]
        for f in files { policyFiles.append(((f as NSString).lastPathComponent, try String(contentsOfFile: f, encoding: .utf8))) }
    }
    return Renderer.render(set, policyFiles: policyFiles.sorted { $0.0 < $1.0 }, options: options)
}

import Catalog
import Codecs
import Foundation
import Storage
import Layout
import Support
import Policy
import Render

/// The host drill's part for a workload's Velero backups: the restore point chosen for the
/// target is unpacked into a scratch directory, every manifest must parse, the items must be
/// exactly those its `-resource-list.json.gz` names, and with file-system volume backup its
/// pod volume backups must have completed into a repository that holds data.
public enum VeleroDrillCheck {
    public static func run(policy: BackupPolicy, store: ObjectStorePolicy, storage reader: any StorageReader, target: RecoveryTarget, now: Date,
                           scratchBase: String, owner: String, progress: (String) -> Void) -> [DrillEvidence.Check] {
        let t0 = Date()
        var checks: [DrillEvidence.Check] = []
        func add(_ name: String, _ ok: Bool?, _ detail: String) {
            let r = DrillEvidence.Check(name: name, result: ok == nil ? .skipped : ok! ? .passed : .failed, detail: detail, seconds: Date().timeIntervalSince(t0))
            progress("check \(r.result.rawValue): \(r.name) (\(r.detail))")
            checks.append(r)
        }
        guard let velero = policy.velero else { return [] }
        let layout = VeleroLayout(root: store.prefixes.velero.value)
        let names = Set(velero.schedules.map { VeleroLayout.scheduleName(policy: policy.name.value, tier: $0.tier.value) })
        let cutoff = target.date ?? now
        let entries: [VeleroBackupEntry]
        do {
            entries = try VeleroScanner.scan(reader, layout: layout)
        } catch {
            add("velero backup", false, "cannot list \(layout.backupsPrefix): \(error)")
            return checks
        }
        guard let backup = Self.restorePoint(entries, schedules: names, at: cutoff) else {
            add("velero backup", false, "no completed Velero backup of schedule(s) \(names.sorted().joined(separator: ", ")) at or before \(RFC3339.format(cutoff))")
            return checks
        }
        let scratch: ScratchDirectory
        do {
            scratch = try ScratchDirectory(base: scratchBase, kind: "velero", name: backup.name, runAs: nil, owner: owner)
        } catch {
            add("velero backup \(backup.name)", false, "\(error)")
            return checks
        }
        defer { scratch.remove() }
        do {
            let tar = try TarExtractor(root: scratch.path)
            let gz = try GzipStream(limit: 8 << 30)
            try reader.get(layout.contentsKey(backup: backup.name), range: nil) { chunk in
                try gz.feed(chunk) { try tar.feed($0) }
            }
            try gz.finish()
            try tar.finish()
            let items = try manifests(in: scratch.path + "/resources")
            let listed = try resourceList(reader: reader, key: layout.sideFileKey(backup: backup.name, suffix: "resource-list.json.gz"))
            let missing = listed.flatMap { kind, names in names.subtracting(items[kind] ?? []).map { "\(kind) \($0)" } }.sorted()
            let extra = items.flatMap { kind, names in names.subtracting(listed[kind] ?? []).map { "\(kind) \($0)" } }.sorted()
            let total = items.values.reduce(0) { $0 + $1.count }
            let counts = items.map { "\($0.key)=\($0.value.count)" }.sorted().joined(separator: " ")
            if missing.isEmpty && extra.isEmpty {
                add("velero \(backup.name) manifests", true, "\(total) items parse and match the resource list (\(counts))")
            } else {
                add("velero \(backup.name) manifests", false,
                    "resource list and tarball differ: missing from the tarball \(missing.prefix(5).joined(separator: ", "))\(missing.count > 5 ? " (+\(missing.count - 5))" : ""); not in the list \(extra.prefix(5).joined(separator: ", "))")
            }
            for case .resourceCount(let kind, let min) in policy.drill?.checks ?? [] {
                let n = items.filter { $0.key == kind || $0.key.hasSuffix("/" + kind) }.reduce(0) { $0 + $1.value.count }
                add("resourceCount \(kind) >= \(min)", n >= min, "\(n) \(kind) in \(backup.name)")
            }
            if velero.volumes == .fileSystem {
                let (ok, detail) = try volumeData(reader: reader, layout: layout, backup: backup.name, items: items)
                add("velero \(backup.name) volume data", ok, detail)
            }
        } catch {
            add("velero \(backup.name) manifests", false, "\(error)")
        }
        return checks
    }

    /// The newest completed backup of `schedules` at or before `cutoff`: what a drill or a
    /// restore at that time restores.
    static func restorePoint(_ entries: [VeleroBackupEntry], schedules: Set<String>, at cutoff: Date) -> VeleroBackupEntry? {
        entries.filter { $0.restorePoint && ($0.schedule.map(schedules.contains) ?? false) && ($0.completionTime ?? .distantFuture) <= cutoff }
            .max { $0.completionTime! < $1.completionTime! }
    }

    /// Every manifest under `resources/`, by `apiVersion/Kind` (the resource list's keys, with
    /// `v1/Pod` for the core group), as `namespace/name` or `name`.
    static func manifests(in dir: String) throws -> [String: Set<String>] {
        var out: [String: Set<String>] = [:]
        guard let e = FileManager.default.enumerator(atPath: dir) else { return out }
        while let rel = e.nextObject() as? String {
            guard rel.hasSuffix(".json") else { continue }
            let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + rel))
            guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let api = obj["apiVersion"] as? String, let kind = obj["kind"] as? String,
                  let meta = obj["metadata"] as? [String: Any], let name = meta["name"] as? String else {
                throw LocalError("resources/\(rel) is not a Kubernetes object")
            }
            let id = (meta["namespace"] as? String).map { "\($0)/\(name)" } ?? name
            out["\(api)/\(kind)", default: []].insert(id)
        }
        return out
    }

    static func resourceList(reader: any StorageReader, key: String) throws -> [String: Set<String>] {
        let raw = try Gzip.decompress(try reader.read(key), limit: 256 << 20)
        guard let obj = try JSONSerialization.jsonObject(with: Data(raw)) as? [String: [String]] else {
            throw LocalError("\(key) is not a resource list")
        }
        return obj.mapValues(Set.init)
    }

    /// With file-system backup every PodVolumeBackup must be Completed, and the repository for
    /// its namespace must hold objects.
    static func volumeData(reader: any StorageReader, layout: VeleroLayout, backup: String, items: [String: Set<String>]) throws -> (Bool, String) {
        let key = layout.sideFileKey(backup: backup, suffix: "podvolumebackups.json.gz")
        let pvcs = items["v1/PersistentVolumeClaim"]?.count ?? 0
        let list: [[String: Any]]
        do {
            list = try JSONSerialization.jsonObject(with: Data(try Gzip.decompress(try reader.read(key), limit: 64 << 20))) as? [[String: Any]] ?? []
        } catch StorageError.notFound {
            return (pvcs == 0, pvcs == 0 ? "no volumes in the backup" : "\(pvcs) PVCs backed up, but no pod volume backups (\(key) is missing)")
        }
        if list.isEmpty { return (pvcs == 0, pvcs == 0 ? "no volumes in the backup" : "\(pvcs) PVCs backed up, but no pod volume backups") }
        var bad: [String] = []
        var namespaces = Set<String>()
        for pvb in list {
            let meta = pvb["metadata"] as? [String: Any], status = pvb["status"] as? [String: Any], spec = pvb["spec"] as? [String: Any]
            let name = meta?["name"] as? String ?? "?"
            if status?["phase"] as? String != "Completed" { bad.append("\(name) is \(status?["phase"] as? String ?? "without a phase")") }
            if let pod = spec?["pod"] as? [String: Any], let ns = pod["namespace"] as? String { namespaces.insert(ns) }
        }
        for ns in namespaces.sorted() {
            var count = 0
            try reader.list(prefix: "\(layout.root.isEmpty ? "" : layout.root + "/")kopia/\(ns)/", delimiter: nil, startAfter: nil) { objs, _ in count += objs.count }
            if count == 0 { bad.append("the kopia repository for \(ns) is empty") }
        }
        return (bad.isEmpty, bad.isEmpty ? "\(list.count) pod volume backups completed, repositories hold data" : bad.joined(separator: "; "))
    }
}

import Foundation
import Layout
import Policy
import Storage
import Support

/// Opens a policy's ObjectStore. The commands (the composition root) choose the driver: drctl's
/// S3 client for the policy's endpoint, or a copy given with --source file:///path.
public typealias StoreOpener = (ObjectStorePolicy) throws -> StoreAccess
/// Opens the store a copy goes to, with the copy's own keys (never the source's).
public typealias CopyOpener = (ObjectStorePolicy) throws -> any StorageReader

/// What a command reads backups from: the catalog's copy of the store when one is given, else the store.
public func backupReader(_ storage: any StorageReader, catalog: CatalogStore?) -> any StorageReader {
    catalog.map { $0.reader(store: storage.identity) } ?? storage
}

/// One workload as `drctl status` and `drctl serve` see it: its status and what it was computed from.
public struct EvaluatedWorkload {
    public var policy: BackupPolicy
    public var store: ObjectStorePolicy
    public var status: WorkloadStatus
    public var velero: [VeleroBackupEntry]
    /// By serverName: the scan and the WAL archive as listed.
    public var barman: [String: (scan: BarmanServerScan, archive: WALArchive)]
}

/// Reads, per object store, the Velero backups and barman archives of `selected` (from the
/// catalog when given, else the bucket), and evaluates each workload's status with its newest drill.
/// With `copies`, each store's copies (spec.copies) are read too, and a copy lagging past its
/// maxLag (or unreadable) puts the store's workloads AT RISK.
public func evaluateWorkloads(_ selected: [BackupPolicy], in set: PolicySet, open: StoreOpener, catalog: CatalogStore?, now: Date,
                              copies: CopyOpener? = nil) throws -> [EvaluatedWorkload] {
    var out: [EvaluatedWorkload] = []
    for (storeName, group) in Dictionary(grouping: selected, by: { $0.objectStore.value }).sorted(by: { $0.key < $1.key }) {
        guard let store = set.objectStore(named: storeName) else { continue }
        let storage = try open(store).storage
        let reader = backupReader(storage, catalog: catalog)
        var velero: [VeleroBackupEntry] = []
        if group.contains(where: { $0.velero != nil }) {
            velero = try VeleroScanner.scan(reader, layout: VeleroLayout(root: store.prefixes.velero.value), allowPartiallyFailed: true)
        }
        let layout = BarmanLayout(root: store.prefixes.barman.value)
        var barman: [String: (scan: BarmanServerScan, archive: WALArchive)] = [:]
        for p in group { for c in p.cnpg { barman[c.serverName.value] = try BarmanScanner.scanArchive(reader, layout: layout, server: c.serverName.value) } }
        let lock = catalog == nil ? try barmanObjectLock(storage, store: store, barman: barman) : nil
        let copyStates = copies.map { StoreCopies.inspect(store, in: set, source: storage, open: $0, now: now,
                                                          servers: group.flatMap { $0.cnpg.map(\.serverName.value) }) } ?? []
        for p in group {
            // The bucket's newest evidence drctl sealed, or a drill recorded here that the catalog has not synced yet.
            let inBucket = try DrillEvidence.recent(reader, drctlPrefix: store.prefixes.drctl.value, workload: p.name.value, catalog: catalog)
            var status = StatusEvaluator.evaluate(workloadSpec(p), velero: velero, barman: barman.mapValues(\.scan), drill: inBucket.drills.first, now: now)
            predictRTO(p, drills: inBucket.drills, barman: barman, into: &status)
            if !inBucket.unauthenticated.isEmpty {
                status.unauthenticatedEvidence = inBucket.unauthenticated
                status.reasons.append("\(inBucket.unauthenticated.count) drill evidence object(s) newer than the last drill are not sealed with drctl's record key, and are ignored (e.g. \(inBucket.unauthenticated[0])): see runbook DrctlUnauthenticatedRecord")
            }
            if let lock, !p.cnpg.isEmpty {
                status.objectLock = lock.description
                if let problem = lock.problem {
                    status.status = max(status.status, .atRisk)
                    status.reasons.append("Object Lock: \(problem)")
                }
            }
            if !copyStates.isEmpty { StoreCopies.judge(copyStates, servers: p.cnpg.map(\.serverName.value), into: &status) }
            for c in p.cnpg {
                guard let found = barman[c.serverName.value] else { continue }
                let unreadable = unreadableCompressions(found.scan, found.archive)
                if !unreadable.isEmpty {
                    status.status = max(status.status, .atRisk)
                    status.reasons.append("\(c.cluster.value): drctl cannot verify \(unreadable.joined(separator: ", "))-compressed WAL or base backups: restore, verify and copy read gzip and uncompressed archives only (set compression: gzip)")
                }
            }
            out.append(EvaluatedWorkload(policy: p, store: store, status: status, velero: velero,
                                         barman: barman.filter { s in p.cnpg.contains { $0.serverName.value == s.key } }))
        }
    }
    return out.sorted { $0.status.workload < $1.status.workload }
}

/// The RTO of a restore started now, from the workload's drills' rates and what its databases'
/// restores would read today; beyond the objective the workload is AT RISK before any drill
/// finds it breached.
func predictRTO(_ p: BackupPolicy, drills: [DrillEvidence], barman: [String: (scan: BarmanServerScan, archive: WALArchive)], into status: inout WorkloadStatus) {
    guard !p.cnpg.isEmpty else { return }
    var base: Int64 = 0, wal: Int64 = 0
    for c in p.cnpg {
        guard let found = barman[c.serverName.value], let now = RTOModel.restoreNow(found.scan, found.archive) else { return }
        base += now.baseBytes
        wal += now.walBytes
    }
    let samples = RTOModel.samples(drills)
    // The schedule's worst case at the archive's WAL rate: what lint and status warn about.
    for c in p.cnpg {
        guard let found = barman[c.serverName.value], let now = RTOModel.restoreNow(found.scan, found.archive),
              let rate = RTOModel.walBytesPerHour(found.scan.backups), let interval = c.schedule.value.longestGap,
              let advice = RTOModel.advice(samples, baseBytes: now.baseBytes, walBytesPerHour: rate, intervalSeconds: interval, rto: p.rto.value.seconds) else { continue }
        status.rtoAdvice = (status.rtoAdvice ?? []) + ["\(c.cluster.value): \(advice)"]
    }
    guard var prediction = RTOModel.predict(samples, baseBytes: base, walBytes: wal) else { return }
    prediction.objectiveSeconds = p.rto.value.seconds
    status.predictedRTO = prediction
    if prediction.seconds > Double(p.rto.value.seconds) {
        status.status = max(status.status, .atRisk)
        status.reasons.append("a restore started now would take about \(TimeSpan.humanize(Int(prediction.seconds))) (\(formatBytes(base)) of base backup, \(formatBytes(wal)) of WAL at the rates \(prediction.drills.count) drill(s) measured), more than the RTO of \(p.rto.value): see runbook DrctlRTOAtRisk")
    }
}

/// Compressions in a barman archive that drctl cannot read (it reads gzip and plain tar/WAL).
public func unreadableCompressions(_ scan: BarmanServerScan, _ archive: WALArchive) -> [String] {
    let unreadable = Compression.allCases.filter { !BarmanCompression.readable.contains($0) }
    var found = Set<String>()
    for o in archive.segments.values { for c in unreadable where o.key.hasSuffix("." + c.rawValue) { found.insert("\(c)") } }
    for b in scan.backups { for f in b.archiveFiles { if let s = f.compression, let c = Compression(rawValue: s), unreadable.contains(c) { found.insert("\(c)") } } }
    return found.sorted()
}

/// The bucket's Object Lock against the store policy's requirement, judged on the newest WAL
/// segment of its archives.
func barmanObjectLock(_ storage: any StorageReader, store: ObjectStorePolicy, barman: [String: (scan: BarmanServerScan, archive: WALArchive)]) throws -> ObjectLockCheck.Finding? {
    let required = store.objectLock.map { ObjectLockCheck.Requirement(mode: $0.mode, retentionSeconds: $0.retention.seconds) }
    let bucket: BucketLock
    do {
        bucket = try storage.bucketLock()
    } catch StorageError.accessDenied(let why) {
        return ObjectLockCheck.Finding(description: "unknown (no right to read the bucket's Object Lock configuration)",
                                       problem: required == nil ? nil : "cannot read the bucket's Object Lock configuration: \(why)")
    }
    let newest = barman.values.compactMap { $0.archive.segments.max { $0.key < $1.key }?.value }.max { ($0.lastModified ?? .distantPast) < ($1.lastModified ?? .distantPast) }
    let head = try newest.flatMap { try storage.head($0.key) }
    return ObjectLockCheck.assess(bucket, required: required, newestWAL: head)
}

/// What the evaluation needs of a policy.
public func workloadSpec(_ p: BackupPolicy) -> WorkloadSpec {
    WorkloadSpec(
        name: p.name.value, rpo: p.rpo.value.seconds,
        velero: (p.velero?.schedules ?? []).map {
            .init(tier: $0.tier.value, schedule: $0.cron.value.expression,
                  scheduleName: VeleroLayout.scheduleName(policy: p.name.value, tier: $0.tier.value),
                  interval: $0.cron.value.longestGap ?? 86400, retention: $0.retention.value.description)
        },
        databases: p.cnpg.map {
            .init(cluster: $0.cluster.value, serverName: $0.serverName.value, schedule: $0.schedule.value.expression,
                  interval: $0.schedule.value.longestGap ?? 86400, retention: $0.retention.value.description, tiers: $0.tiers)
        },
        rto: p.rto.value.seconds, drills: p.drill != nil)
}

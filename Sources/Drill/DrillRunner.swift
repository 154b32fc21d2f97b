import Catalog
import Foundation
import Kube
import Policy
import Storage
import Support

/// Where a drill restores: a scratch directory with a local PostgreSQL, or a scratch namespace.
public enum DrillMode: String, Sendable, CaseIterable { case host, cluster }

/// One restore drill, host or cluster, its evidence recorded in the catalog and (unless told
/// not to) uploaded to the store: what `drctl verify` and `drctl serve` run.
/// Its closures only build values (clients, options) from the command line, so running drills
/// side by side (drctl serve --max-drills) shares nothing mutable.
public struct DrillRunner: @unchecked Sendable {
    public var open: StoreOpener
    public var mode: DrillMode
    /// Host drills: how PostgreSQL runs (the command builds it from its flags).
    public var hostOptions: () throws -> HostRestoreOptions
    /// Cluster drills: the API server.
    public var kube: () throws -> KubeClient
    public var keep = false
    public var credentialsNamespace = "drctl"
    public var checkImage: String?
    public var upload = true
    /// The copy of the bucket drills restore from (`drctl verify --source`), recorded in the evidence.
    public var copy: String?
    /// `drctl serve`'s schedule slot the drill runs for (cluster drills annotate it).
    public var slot: String?
    /// A progress display for the base backup's download: its callback and what ends it.
    public var transferProgress: () -> (TransferProgress?, () -> Void) = { (nil, {}) }

    public init(open: @escaping StoreOpener, mode: DrillMode, hostOptions: @escaping () throws -> HostRestoreOptions, kube: @escaping () throws -> KubeClient) {
        self.open = open
        self.mode = mode
        self.hostOptions = hostOptions
        self.kube = kube
    }

    /// The evidence, and whether it reached the store (always true without upload). `catalog`:
    /// where the evidence is recorded besides the store (nil: nowhere else).
    public func run(_ p: BackupPolicy, store objectStore: ObjectStorePolicy, target: RecoveryTarget, catalog: CatalogStore?,
                    log: @escaping (String) -> Void) throws -> (DrillEvidence, Bool) {
        let access = try open(objectStore)
        var evidence: DrillEvidence
        switch mode {
        case .host:
            var drill = HostDrill(policy: p, store: objectStore, access: access, target: target, options: try hostOptions())
            drill.keep = keep
            // The rates of this workload's earlier drills, from its store and the catalog.
            let earlier = try? DrillEvidence.recent(access.storage, drctlPrefix: objectStore.prefixes.drctl.value, workload: p.name.value, catalog: catalog)
            drill.rates = RTOModel.samples(earlier?.drills ?? [])
            let (transfer, finish) = transferProgress()
            evidence = drill.run(progress: log, transfer: transfer)
            Cleanup.shared.parkIfAborting()
            finish()
        case .cluster:
            var drill = ClusterDrill(policy: p, store: objectStore, storage: access.storage, kube: try kube(), target: target)
            drill.keep = keep
            drill.credentialsNamespace = credentialsNamespace
            drill.checkImage = checkImage
            drill.slot = slot
            evidence = drill.run(progress: log)
            Cleanup.shared.parkIfAborting()
        }
        evidence.source = copy
        try catalog?.recordDrill(evidence)
        var stored = true
        if upload {
            do {
                let key = try HostDrill.upload(evidence, store: objectStore, to: access.storage)
                log("evidence stored at \(access.storage.location)/\(key)")
            } catch {
                log("could not store the evidence in the bucket: \(error)")
                stored = false
            }
        }
        return (evidence, stored)
    }
}

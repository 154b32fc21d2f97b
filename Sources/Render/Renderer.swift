import Foundation
import Support
import Layout
import Policy

/// Options that are not part of the policies themselves.
public struct RenderOptions: Sendable {
    /// Where alerts' runbook links point: `<base>/<AlertName>.md`.
    public var runbookBaseURL: String
    public var veleroNamespace: String
    public var drctlNamespace: String

    public init(runbookBaseURL: String = "runbooks",
                veleroNamespace: String = "velero", drctlNamespace: String = "drctl") {
        self.runbookBaseURL = runbookBaseURL
        self.veleroNamespace = veleroNamespace
        self.drctlNamespace = drctlNamespace
    }
}

/// Policies -> Kubernetes manifests, kustomize-ready. Pure and deterministic.
public enum Renderer {
    public static let pluginName = "barman-cloud.cloudnative-pg.io"

    public static func render(_ set: PolicySet, policyFiles: [(name: String, text: String)], options: RenderOptions) -> [RenderedFile] {
        var files: [RenderedFile] = []
        for store in set.objectStores.sorted(by: { $0.name.value < $1.name.value }) {
            files.append(RenderedFile(path: "velero/backupstoragelocation-\(store.name.value).yaml",
                                      objects: [backupStorageLocation(store, options)]))
        }
        for policy in set.backupPolicies.sorted(by: { $0.name.value < $1.name.value }) {
            guard let store = set.objectStore(named: policy.objectStore.value) else { continue }
            let volumePolicy = veleroVolumePolicy(policy, set, options)
            if let volumePolicy {
                files.append(RenderedFile(path: "velero/volume-policy-\(policy.name.value).yaml", objects: [volumePolicy],
                                          header: "CNPG's database volumes are backed up by barman (base backups and WAL), consistently; a file copy of a\nrunning database directory is not, so Velero keeps their PVC objects and skips their data (policy: velero.databaseVolumes)."))
            }
            for s in policy.velero?.schedules ?? [] {
                files.append(RenderedFile(path: "velero/schedule-\(policy.name.value)-\(s.tier.value).yaml",
                                          objects: [veleroSchedule(policy, s, store, options, volumePolicy: volumePolicy == nil ? nil : volumePolicyName(policy.name.value))]))
            }
            for c in policy.cnpg {
                let base = "cnpg/\(c.namespace)-\(c.cluster.value)"
                switch c.method {
                case .barmanObjectStore:
                    files.append(RenderedFile(path: "\(base)-cluster-patch.yaml", objects: [clusterPatchInTree(policy, c, store)],
                                              header: clusterPatchHeader(c)))
                case .plugin:
                    files.append(RenderedFile(path: "\(base)-objectstore.yaml", objects: [pluginObjectStore(policy, c, store)]))
                    files.append(RenderedFile(path: "\(base)-cluster-patch.yaml", objects: [clusterPatchPlugin(policy, c)],
                                              header: clusterPatchHeader(c)))
                }
                files.append(RenderedFile(path: "\(base)-scheduledbackup.yaml", objects: [scheduledBackup(policy, c)]))
                if let h = c.heartbeat {
                    var f = RenderedFile(path: "\(base)-heartbeat.sql", objects: [],
                                         header: "The heartbeat table of \(c.namespace)/\(c.cluster.value), database \(h.database) (runbooks/heartbeat.md). Run once as a superuser (kubectl cnpg psql connects as one):\n  kubectl cnpg psql \(c.cluster.value) -n \(c.namespace) -- -d \(h.database) -v ON_ERROR_STOP=1 < \(base.dropFirst(5))-heartbeat.sql\nThe role \(HeartbeatSQL.role) is created by CNPG from the Cluster patch (spec.managed.roles).")
                    f.sql = HeartbeatSQL.setup()
                    files.append(f)
                }
            }
        }
        files.append(RenderedFile(path: "prometheus/prometheusrule-drctl.yaml", objects: [Alerts.prometheusRule(set, options)]))
        if let a = set.alerting {
            files.append(RenderedFile(path: "alertmanager/alertmanagerconfig-drctl.yaml", objects: [AlertRouting.config(a, options)],
                                      header: "Where drctl's alerts go (policy \(a.name.value)). `drctl alerts check` proves each receiver gets them."))
        }
        files.append(RenderedFile(path: "drctl/policies-configmap.yaml", objects: [policiesConfigMap(policyFiles, options)]))
        let resources = files.filter { $0.sql == nil }.map(\.path).filter { !$0.hasSuffix("-cluster-patch.yaml") }.sorted()
        let patches = files.map(\.path).filter { $0.hasSuffix("-cluster-patch.yaml") }.sorted()
        files.append(RenderedFile(path: "kustomization.yaml", objects: [[
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources,
        ]], header: patches.isEmpty ? nil : "CNPG Cluster patches are not listed here: drctl does not own your Cluster objects.\nAdd these to the kustomization that holds each Cluster (patches: - path: ...):\n" + patches.map { "  \($0)" }.joined(separator: "\n")))
        return files.sorted { $0.path < $1.path }
    }

    // MARK: Velero

    static func backupStorageLocation(_ s: ObjectStorePolicy, _ o: RenderOptions) -> [String: any Sendable] {
        var objectStorage: [String: any Sendable] = ["bucket": s.bucket.value, "prefix": s.prefixes.velero.value]
        if let ca = s.ca { objectStorage["caCertRef"] = ["name": ca.name, "key": ca.key] }
        return [
            "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
            "metadata": metadata(name: s.name.value, namespace: o.veleroNamespace),
            "spec": [
                "provider": "aws",
                "objectStorage": objectStorage,
                "config": [
                    "region": s.region,
                    "s3ForcePathStyle": s.pathStyle ? "true" : "false",
                    "s3Url": s.endpoint.value,
                    // Newer AWS SDKs send flexible checksums that Ceph RGW rejects; empty disables them.
                    "checksumAlgorithm": "",
                ] as [String: any Sendable],
                "credential": ["name": s.credentials.secretName, "key": s.credentials.veleroKey],
            ] as [String: any Sendable],
        ]
    }

    public static func volumePolicyName(_ policy: String) -> String { "drctl-\(policy)-volume-policy" }

    /// The CNPG clusters whose PVCs a policy's Velero backups hold: those of every policy in the
    /// set whose namespace the backup includes (a `*` backup holds them all).
    static func databaseClusters(in p: BackupPolicy, _ set: PolicySet) -> [String] {
        let patterns = p.namespaces.map(\.value)
        let clusters = set.backupPolicies.flatMap(\.cnpg).filter { c in patterns.contains { VeleroNamespaces.matches($0, c.namespace) } }
        return Array(Set(clusters.map(\.cluster.value))).sorted()
    }

    /// Velero's volume policy (velero.io/docs/main/resource-filtering, "Resource policies";
    /// `pvcLabels` since Velero 1.15): the data of PVCs CNPG labels `cnpg.io/cluster: NAME` is
    /// skipped; nil when nothing is to be skipped.
    static func veleroVolumePolicy(_ p: BackupPolicy, _ set: PolicySet, _ o: RenderOptions) -> [String: any Sendable]? {
        guard let v = p.velero, v.databaseVolumes == .skip, v.volumes != .none else { return nil }
        let clusters = databaseClusters(in: p, set)
        guard !clusters.isEmpty else { return nil }
        let rules: [[String: any Sendable]] = clusters.map {
            ["conditions": ["pvcLabels": ["cnpg.io/cluster": $0]], "action": ["type": "skip"]]
        }
        let text = (try? RenderedFile(path: "", objects: [["version": "v1", "volumePolicies": rules]]).yamlBody()) ?? ""
        return [
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(name: volumePolicyName(p.name.value), namespace: o.veleroNamespace, policy: p.name.value),
            "data": ["policy.yaml": text],
        ]
    }

    static func veleroSchedule(_ p: BackupPolicy, _ s: BackupPolicy.Schedule, _ store: ObjectStorePolicy, _ o: RenderOptions,
                               volumePolicy: String? = nil) -> [String: any Sendable] {
        let labels = ["drctl.dev/policy": p.name.value, "drctl.dev/tier": s.tier.value]
        var template: [String: any Sendable] = [
            "includedNamespaces": p.namespaces.map(\.value),
            "includeClusterResources": p.includeClusterResources,
            "storageLocation": store.name.value,
            "ttl": s.retention.value.goDuration,
            "metadata": ["labels": labels],
        ]
        let volumes = p.velero?.volumes ?? .snapshot
        template["snapshotVolumes"] = volumes == .snapshot
        template["defaultVolumesToFsBackup"] = volumes == .fileSystem
        if let ex = p.velero?.excludedResources, !ex.isEmpty { template["excludedResources"] = ex }
        if let volumePolicy { template["resourcePolicy"] = ["kind": "configmap", "name": volumePolicy] }
        if let hooks = p.velero?.hooks, !hooks.isEmpty {
            template["hooks"] = ["resources": hooks.map { h -> [String: any Sendable] in
                var r: [String: any Sendable] = [
                    "name": h.name, "includedNamespaces": p.namespaces.map(\.value),
                    h.when: [["exec": ["container": h.container, "command": h.command, "onError": h.onError,
                                       "timeout": "\(h.timeout.seconds)s"] as [String: any Sendable]]],
                ]
                if !h.labelSelector.isEmpty { r["labelSelector"] = ["matchLabels": h.labelSelector] }
                return r
            }]
        }
        return [
            "apiVersion": "velero.io/v1", "kind": "Schedule",
            "metadata": metadata(name: VeleroLayout.scheduleName(policy: p.name.value, tier: s.tier.value), namespace: o.veleroNamespace, policy: p.name.value,
                                 extra: ["drctl.dev/tier": s.tier.value]),
            "spec": ["schedule": s.cron.value.expression, "useOwnerReferencesInBackup": false, "template": template] as [String: any Sendable],
        ]
    }

    // MARK: CNPG

    /// CNPG's retention form `^[1-9][0-9]*[dwm]$` (m = months).
    public static func cnpgRetention(_ d: TimeSpan) -> String { d.cnpgRetention }

    /// `archive_timeout`: the policy's, or half the RPO (at least a minute), so a quiet
    /// database still ships a segment well within the RPO.
    public static func archiveTimeout(_ p: BackupPolicy, _ c: BackupPolicy.CNPGCluster) -> String {
        let s = c.archiveTimeout?.value.seconds ?? max(60, p.rpo.value.seconds / 2)
        return "\(s)s"
    }

    static func barmanConfiguration(_ c: BackupPolicy.CNPGCluster, _ store: ObjectStorePolicy) -> [String: any Sendable] {
        var wal: [String: any Sendable] = ["maxParallel": c.walMaxParallel]
        if let comp = c.walCompression { wal["compression"] = comp }
        var data: [String: any Sendable] = ["jobs": c.dataJobs]
        if let comp = c.dataCompression { data["compression"] = comp }
        var conf: [String: any Sendable] = [
            "destinationPath": store.barmanDestination,
            "endpointURL": store.endpoint.value,
            "serverName": c.serverName.value,
            "s3Credentials": [
                "accessKeyId": ["name": store.credentials.secretName, "key": store.credentials.accessKeyIdKey],
                "secretAccessKey": ["name": store.credentials.secretName, "key": store.credentials.secretAccessKeyKey],
            ],
            "wal": wal,
            "data": data,
        ]
        if let ca = store.ca { conf["endpointCA"] = ["name": ca.name, "key": ca.key] }
        return conf
    }

    static func clusterPatchHeader(_ c: BackupPolicy.CNPGCluster) -> String {
        var h = "Strategic-merge patch for the existing Cluster \(c.namespace)/\(c.cluster.value): add it to the kustomization that holds that Cluster."
        if !c.tiers.isEmpty {
            h += " Retention has long-term tiers (\(c.tiers)), which CNPG cannot keep: its retentionPolicy is left out (null here removes one already set), and drctl prune applies the window and the tiers."
        }
        return h
    }

    /// CNPG's retentionPolicy, or with tiers none at all: CNPG applies its recovery window with
    /// barman-cloud-backup-delete, which would delete every tier backup older than the window.
    /// CNPG and the plugin clean up only through `.spec.retentionPolicy` (plugin-barman-cloud docs,
    /// "Retention Policies"), so without it they delete nothing.
    static func cnpgRetentionPolicy(_ c: BackupPolicy.CNPGCluster) -> any Sendable {
        c.tiers.isEmpty ? cnpgRetention(c.retention.value) : NSNull()
    }

    static func clusterPatchInTree(_ p: BackupPolicy, _ c: BackupPolicy.CNPGCluster, _ store: ObjectStorePolicy) -> [String: any Sendable] {
        [
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": ["name": c.cluster.value, "namespace": c.namespace],
            "spec": [
                "backup": [
                    "barmanObjectStore": barmanConfiguration(c, store),
                    "retentionPolicy": cnpgRetentionPolicy(c),
                    "target": c.target,
                ] as [String: any Sendable],
                "postgresql": ["parameters": ["archive_timeout": archiveTimeout(p, c)]],
            ].merging(heartbeatRoles(c)) { a, _ in a } as [String: any Sendable],
        ]
    }

    /// `spec.managed.roles` with the heartbeat writer, when the policy has a heartbeat.
    static func heartbeatRoles(_ c: BackupPolicy.CNPGCluster) -> [String: any Sendable] {
        guard let h = c.heartbeat else { return [:] }
        return ["managed": ["roles": [HeartbeatSQL.managedRole(h)]] as [String: any Sendable]]
    }

    static func pluginObjectName(_ c: BackupPolicy.CNPGCluster) -> String { "\(c.cluster.value)-backup" }

    static func pluginObjectStore(_ p: BackupPolicy, _ c: BackupPolicy.CNPGCluster, _ store: ObjectStorePolicy) -> [String: any Sendable] {
        var conf = barmanConfiguration(c, store)
        conf.removeValue(forKey: "serverName")   // the plugin takes serverName from the Cluster's parameters
        return [
            "apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
            "metadata": metadata(name: pluginObjectName(c), namespace: c.namespace, policy: p.name.value),
            "spec": c.tiers.isEmpty ? ["configuration": conf, "retentionPolicy": cnpgRetention(c.retention.value)] as [String: any Sendable]
                                    : ["configuration": conf] as [String: any Sendable],
        ]
    }

    static func clusterPatchPlugin(_ p: BackupPolicy, _ c: BackupPolicy.CNPGCluster) -> [String: any Sendable] {
        [
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": ["name": c.cluster.value, "namespace": c.namespace],
            "spec": [
                "plugins": [[
                    "name": pluginName, "isWALArchiver": true,
                    "parameters": ["barmanObjectName": pluginObjectName(c), "serverName": c.serverName.value],
                ] as [String: any Sendable]],
                "postgresql": ["parameters": ["archive_timeout": archiveTimeout(p, c)]],
            ].merging(heartbeatRoles(c)) { a, _ in a } as [String: any Sendable],
        ]
    }

    static func scheduledBackup(_ p: BackupPolicy, _ c: BackupPolicy.CNPGCluster) -> [String: any Sendable] {
        var spec: [String: any Sendable] = [
            "schedule": c.schedule.value.expression,
            "cluster": ["name": c.cluster.value],
            "backupOwnerReference": "self",
            "immediate": true,
            "target": c.target,
            "method": c.method.rawValue,
        ]
        if c.method == .plugin { spec["pluginConfiguration"] = ["name": pluginName] }
        return [
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "ScheduledBackup",
            "metadata": metadata(name: "\(c.cluster.value)-base", namespace: c.namespace, policy: p.name.value),
            "spec": spec,
        ]
    }

    // MARK: drctl

    static func policiesConfigMap(_ files: [(name: String, text: String)], _ o: RenderOptions) -> [String: any Sendable] {
        var data: [String: String] = [:]
        for f in files { data[f.name] = f.text }
        return [
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(name: "drctl-policies", namespace: o.drctlNamespace),
            "data": data,
        ]
    }
}

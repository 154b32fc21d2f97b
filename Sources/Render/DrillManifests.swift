import Foundation
import Policy
import Support

/// The objects of a restore drill in a cluster: a labelled scratch namespace, a Velero Restore
/// mapped into it, and for each database a CNPG Cluster that recovers from the object store —
/// with no backup section and no WAL archiver of its own, so a drill can never write into the
/// production archive ("Expected empty archive" and archive pollution start there).
public enum DrillManifests {
    /// Every drill namespace carries this label (value "true") and the annotations below; drctl
    /// deletes no namespace that lacks the label and the `drill-` name prefix.
    public static let label = "drctl.dev/drill"
    public static let idAnnotation = "drctl.dev/drill-id"
    public static let workloadAnnotation = "drctl.dev/drill-workload"
    public static let expiresAnnotation = "drctl.dev/drill-expires"
    /// The Velero Restore that writes into the namespace (the janitor waits for it to settle).
    public static let restoreAnnotation = "drctl.dev/drill-restore"
    /// `drctl serve`'s schedule slot (job/stamp) the drill runs for: what a new leader looks
    /// for to clean up after a leader that died mid-drill.
    public static let slotAnnotation = "drctl.dev/drill-slot"
    public static let namePrefix = "drill-"
    /// On objects drctl makes outside a scratch namespace for a workload's drills.
    public static let workloadLabel = "drctl.dev/drill-workload"
    /// The object store's keys, copied into the namespace a recovery Cluster is made in, under
    /// this name whatever the Secret in drctl's namespace is called: admission refuses any pod
    /// but CNPG's that refers to it.
    public static let credentialsSecret = "drctl-object-store-credentials"
    /// The labels of everything drctl makes for a drill.
    public static let labels = [label: "true", "app.kubernetes.io/managed-by": "drctl"]

    /// `drill-<workload>-<yyyymmddhhmmss>-<suffix>`, cut to a DNS label (the suffix keeps two
    /// drills started in the same second apart).
    public static func namespaceName(workload: String, at date: Date, suffix: String = String(UInt16.random(in: 0...UInt16.max), radix: 16)) -> String {
        // A DNS label: the basic form without its T and Z.
        let stamp = RFC3339.formatBasic(date).filter(\.isNumber)
        let room = 63 - namePrefix.count - 1 - stamp.count - 1 - suffix.count
        var w = String(workload.prefix(room))
        while w.hasSuffix("-") { w.removeLast() }
        return "\(namePrefix)\(w)-\(stamp)-\(suffix)"
    }

    /// Whether a namespace is one of drctl's drills (label and name prefix both).
    public static func isDrillNamespace(name: String, labels: [String: String]) -> Bool {
        name.hasPrefix(namePrefix) && labels[label] == "true"
    }

    public static func namespace(_ name: String, drillID: String, workload: String, expires: String, restore: String? = nil, slot: String? = nil) -> [String: any Sendable] {
        var annotations = [idAnnotation: drillID, workloadAnnotation: workload, expiresAnnotation: expires]
        if let restore { annotations[restoreAnnotation] = restore }
        if let slot { annotations[slotAnnotation] = slot }
        return namespace(name, labels: labels.merging(DrillIsolation.podSecurityLabels) { a, _ in a },
                         annotations: annotations)
    }

    static func namespace(_ name: String, labels: [String: String], annotations: [String: String]) -> [String: any Sendable] {
        [
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": [
                "name": name,
                "labels": labels,
                "annotations": annotations,
            ] as [String: any Sendable],
        ]
    }

    /// A Cluster in the scratch namespace recovering `c` from the object store to `targetTime`
    /// (PostgreSQL's form, `YYYY-MM-DD HH:MM:SS.ffffff+00`; nil: the newest point). With the
    /// Barman Cloud Plugin, the ObjectStore it reads is returned too (it must sit in the
    /// Cluster's namespace).
    public static func recoveryCluster(policy p: BackupPolicy, cluster c: BackupPolicy.CNPGCluster, store: ObjectStorePolicy,
                                       namespace scratch: String, targetTime: String?, backupID: String? = nil,
                                       storageSize: String = "10Gi") -> [[String: any Sendable]] {
        var recovery: [String: any Sendable] = ["source": "origin"]
        if let targetTime { recovery["recoveryTarget"] = ["targetTime": targetTime] }
        // A restore point: CNPG's recoveryTarget.backupID with targetImmediate (stop when consistent).
        if let backupID { recovery["recoveryTarget"] = ["backupID": backupID, "targetImmediate": true] as [String: any Sendable] }
        let meta: [String: any Sendable] = ["name": c.cluster.value, "namespace": scratch,
                                            "labels": labels]
        var out: [[String: any Sendable]] = []
        let origin: [String: any Sendable]
        // The keys as drctl copies them into the namespace.
        var copied = store
        copied.credentials.secretName = credentialsSecret
        switch c.method {
        case .barmanObjectStore:
            var conf = Renderer.barmanConfiguration(c, copied)
            conf.removeValue(forKey: "data")   // base backup settings: a drill takes none
            origin = ["name": "origin", "barmanObjectStore": conf]
        case .plugin:
            var objectStore = Renderer.pluginObjectStore(p, c, copied)
            objectStore["metadata"] = ["name": Renderer.pluginObjectName(c), "namespace": scratch,
                                       "labels": labels] as [String: any Sendable]
            if var spec = objectStore["spec"] as? [String: any Sendable] {
                spec.removeValue(forKey: "retentionPolicy")   // retention would delete from the production archive
                objectStore["spec"] = spec
            }
            out.append(objectStore)
            origin = ["name": "origin", "plugin": [
                "name": Renderer.pluginName,
                "parameters": ["barmanObjectName": Renderer.pluginObjectName(c), "serverName": c.serverName.value],
            ] as [String: any Sendable]]
        }
        out.append([
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": meta,
            "spec": [
                "instances": 1,
                // The `<cluster>-superuser` Secret is what the check Jobs log in with.
                "enableSuperuserAccess": true,
                "storage": ["size": storageSize],
                "bootstrap": ["recovery": recovery],
                "externalClusters": [origin],
            ].merging(preload(p)) { a, _ in a } as [String: any Sendable],
        ])
        return out
    }

    /// The libraries the policy lets a recovered server preload (CNPG adds them to its own:
    /// cloudnative-pg.io/documentation/current/postgresql_conf/#shared-preload-libraries).
    static func preload(_ p: BackupPolicy) -> [String: any Sendable] {
        guard let names = p.drill?.preloadLibraries, !names.isEmpty else { return [:] }
        return ["postgresql": ["shared_preload_libraries": names] as [String: any Sendable]]
    }

    /// CNPG's PostgreSQL image of a major version: what a check Job runs psql from by default.
    public static func postgresImage(major: Int) -> String { "ghcr.io/cloudnative-pg/postgresql:\(major)" }

    /// A Job in the scratch namespace running one check's psql against the recovered cluster's
    /// `-rw` Service, logged in with the password CNPG keeps in `<cluster>-superuser`; its pod's
    /// log is the answer. No retries (a failing query fails the check), no service account token.
    /// The settings every check session runs with (PGOPTIONS), over any the restored database
    /// sets for its roles or itself: read-only transactions, no library loaded for the session.
    public static let checkSessionOptions = "-c default_transaction_read_only=on -c session_preload_libraries= -c local_preload_libraries="

    public static func checkJob(name: String, namespace: String, cluster: String, psqlArguments: [String], image: String) -> [String: any Sendable] {
        let labels = Self.labels.merging(["app.kubernetes.io/component": "drill-check"]) { a, _ in a }
        return [
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": ["name": name, "namespace": namespace, "labels": labels] as [String: any Sendable],
            "spec": [
                "backoffLimit": 0,
                "activeDeadlineSeconds": 300,
                "template": [
                    "metadata": ["labels": labels],
                    "spec": [
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": false,
                        "securityContext": ["runAsNonRoot": true, "runAsUser": 26, "seccompProfile": ["type": "RuntimeDefault"]] as [String: any Sendable],
                        "containers": [[
                            "name": "psql",
                            "image": image,
                            "command": ["psql"],
                            "args": psqlArguments,
                            "env": [
                                ["name": "PGPASSWORD", "valueFrom": ["secretKeyRef": ["name": "\(cluster)-superuser", "key": "password"]]] as [String: any Sendable],
                                ["name": "PGCONNECT_TIMEOUT", "value": "10"],
                                ["name": "PGAPPNAME", "value": "drctl"],
                                ["name": "PGOPTIONS", "value": checkSessionOptions],
                            ] as [[String: any Sendable]],
                            "resources": ["requests": ["cpu": "10m", "memory": "32Mi"], "limits": ["memory": "128Mi"]],
                            "securityContext": ["allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                                "capabilities": ["drop": ["ALL"]]] as [String: any Sendable],
                        ] as [String: any Sendable]],
                    ] as [String: any Sendable],
                ] as [String: any Sendable],
            ] as [String: any Sendable],
        ]
    }
}

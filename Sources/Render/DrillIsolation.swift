import Foundation
import Layout
import Policy

/// What keeps a cluster drill away from production: which namespaces the Velero Restore may
/// write (each source into its own scratch namespace, never a live one), what it leaves out
/// (production's CNPG objects, cluster-scoped resources), and the seal put on every scratch
/// namespace before anything is restored into it (default-deny network, Pod Security, CronJobs
/// suspended). Pure: the drill and the tests read the same objects.
public enum DrillIsolation {
    /// Resources a drill never restores: production's database objects (the `Cluster`'s backup
    /// section and the plugin `ObjectStore` point at the production archive; a `ScheduledBackup`
    /// would start backups into it); Velero's own objects; production's network policies (they
    /// add up with the seal: any allow rule of theirs would open it); and what makes a controller
    /// outside the namespace act on the world: routes and ingresses (a gateway would serve
    /// production's host names from the drill), certificates and ACME orders, alert rules and
    /// scrape configs (duplicate pages), external secrets (writes into the production vault).
    /// Also: every network plugin's own policies (Calico's and Antrea's would open the seal with
    /// an allow rule of higher priority) and service meshes' routes and entries; CNPG's objects
    /// that act on a Cluster by name (a Subscription would connect the recovery Cluster to
    /// production); Endpoints and EndpointSlices (one labelled with the `-rw` Service's name
    /// would send the checks to any address). Velero drops a name no API serves, so CRDs that are
    /// not installed cost nothing.
    public static let excludedResources = [
        "clusters.postgresql.cnpg.io", "scheduledbackups.postgresql.cnpg.io", "backups.postgresql.cnpg.io",
        "poolers.postgresql.cnpg.io", "databases.postgresql.cnpg.io", "publications.postgresql.cnpg.io",
        "subscriptions.postgresql.cnpg.io", "objectstores.barmancloud.cnpg.io",
        "backups.velero.io", "restores.velero.io", "schedules.velero.io",
        "networkpolicies.networking.k8s.io", "ciliumnetworkpolicies.cilium.io", "networkpolicies.crd.projectcalico.org",
        "networkpolicies.projectcalico.org", "networkpolicies.crd.antrea.io",
        "endpoints", "endpointslices.discovery.k8s.io",
        "ingresses.networking.k8s.io", "gateways.gateway.networking.k8s.io", "httproutes.gateway.networking.k8s.io",
        "grpcroutes.gateway.networking.k8s.io", "tlsroutes.gateway.networking.k8s.io",
        "virtualservices.networking.istio.io", "gateways.networking.istio.io", "serviceentries.networking.istio.io",
        "ingressroutes.traefik.io", "ingressroutes.traefik.containo.us", "httpproxies.projectcontour.io",
        "certificates.cert-manager.io", "issuers.cert-manager.io", "certificaterequests.cert-manager.io",
        "orders.acme.cert-manager.io", "challenges.acme.cert-manager.io",
        "prometheusrules.monitoring.coreos.com", "servicemonitors.monitoring.coreos.com", "podmonitors.monitoring.coreos.com",
        "alertmanagerconfigs.monitoring.coreos.com",
        "externalsecrets.external-secrets.io", "pushsecrets.external-secrets.io",
    ]

    /// CNPG labels everything it makes for a Cluster (instance pods, PVCs, Services, Secrets)
    /// with `cnpg.io/cluster`: none of it is restored, drctl's recovery Cluster makes its own.
    public static let cnpgClusterLabel = "cnpg.io/cluster"

    /// A source namespace and the scratch namespace it is restored into.
    public struct Mapping: Sendable, Equatable {
        public var source: String
        public var scratch: String
        public init(source: String, scratch: String) { self.source = source; self.scratch = scratch }
    }

    public struct PlanError: Error, CustomStringConvertible, Sendable {
        public var description: String
        init(_ d: String) { description = d }
    }

    /// The source namespaces of a drill: the policy's entries, with `*` and glob patterns
    /// expanded from the namespaces the backup itself holds (its resource list). Drill
    /// namespaces a backup happened to catch are left out. Literal entries stay as they are.
    public static func sourceNamespaces(policy entries: [String], backup: Set<String>?) throws -> [String] {
        var out: [String] = []
        for entry in entries {
            if VeleroNamespaces.isPattern(entry) {
                guard let backup else {
                    throw PlanError("namespace pattern '\(entry)' cannot be expanded: the backup has no resource list, so drctl cannot know which namespaces it holds")
                }
                out += backup.filter { VeleroNamespaces.matches(entry, $0) && !$0.hasPrefix(DrillManifests.namePrefix) }.sorted()
            } else {
                out.append(entry)
            }
        }
        var seen = Set<String>()
        out = out.filter { seen.insert($0).inserted }
        guard !out.isEmpty else {
            throw PlanError("the backup holds no namespace matching \(entries.joined(separator: ", ")): nothing to restore")
        }
        return out
    }

    /// Scratch namespace names for `count` sources: the first is the drill's own name, the others
    /// add `-2`, `-3`, … to its random suffix (all stay DNS labels of at most 63 characters).
    public static func scratchNames(workload: String, at date: Date, suffix: String, count: Int) -> [String] {
        (0..<count).map { DrillManifests.namespaceName(workload: workload, at: date, suffix: $0 == 0 ? suffix : "\(suffix)-\($0 + 1)") }
    }

    /// Refuses a mapping that could restore into anything but a scratch namespace: every included
    /// namespace literal, mapped, to a `drill-` namespace of its own, none of them a source.
    public static func validate(_ mappings: [Mapping]) throws {
        guard !mappings.isEmpty else { throw PlanError("no namespaces to restore") }
        var targets = Set<String>()
        let sources = Set(mappings.map(\.source))
        for m in mappings {
            if VeleroNamespaces.isPattern(m.source) || m.source.isEmpty {
                throw PlanError("'\(m.source)' is a pattern: Velero would restore every namespace it matches into its original name, since namespaceMapping keys are literal")
            }
            guard m.scratch.hasPrefix(DrillManifests.namePrefix) else { throw PlanError("\(m.source) would be restored into \(m.scratch), which is not a drill namespace") }
            guard !sources.contains(m.scratch) else { throw PlanError("\(m.scratch) is both a source and a target") }
            guard targets.insert(m.scratch).inserted else { throw PlanError("two namespaces would be restored into \(m.scratch), colliding on same-named objects") }
        }
    }

    /// The Velero Restore of a drill (or of `drctl restore --namespace`): only the mapped
    /// namespaces, each into its target, no cluster-scoped resources, none of production's
    /// database objects, existing objects left alone; with `modifiers` (the name of a
    /// resource-modifier ConfigMap in Velero's namespace) applied to every item.
    public static func veleroRestore(name: String, backup: String, mappings: [Mapping], veleroNamespace: String,
                                     modifiers: String?, labels: [String: String] = DrillManifests.labels) -> [String: any Sendable] {
        var mapping: [String: String] = [:]
        for m in mappings { mapping[m.source] = m.scratch }
        var spec: [String: any Sendable] = [
            "backupName": backup,
            "includedNamespaces": mappings.map(\.source),
            "namespaceMapping": mapping,
            "includeClusterResources": false,
            "excludedResources": excludedResources,
            "labelSelector": ["matchExpressions": [["key": cnpgClusterLabel, "operator": "DoesNotExist"] as [String: any Sendable]]] as [String: any Sendable],
            "restorePVs": true,
            "existingResourcePolicy": "none",
        ]
        if let modifiers { spec["resourceModifier"] = ["kind": "ConfigMap", "name": modifiers] }
        return [
            "apiVersion": "velero.io/v1", "kind": "Restore",
            "metadata": ["name": name, "namespace": veleroNamespace, "labels": labels] as [String: any Sendable],
            "spec": spec,
        ]
    }

    // MARK: The seal

    /// Pod Security admission labels on every scratch namespace: restored pods that need more
    /// than the baseline profile (host namespaces, privileged, host paths) are not admitted.
    public static let podSecurityLabels = [
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    ]

    /// The name of the resource-modifier ConfigMap a workload's drills use (in Velero's namespace;
    /// rewritten by each drill, the same for the same policy).
    public static func modifiersName(workload: String) -> String { "drctl-drill-\(workload)" }

    /// The rules every drill applies (CronJobs suspended, so nothing restored runs on a
    /// schedule), then the policy's own.
    public static func modifierRules(_ extra: [BackupPolicy.Modifier]) -> [[String: any Sendable]] {
        let suspend: [String: any Sendable] = [
            "conditions": ["groupResource": "cronjobs.batch", "resourceNameRegex": ".*"] as [String: any Sendable],
            // `add` replaces a member that exists and creates one that does not (RFC 6902 4.1).
            "patches": [["operation": "add", "path": "/spec/suspend", "value": "true"] as [String: any Sendable]],
        ]
        return [suspend] + extra.map(\.rule)
    }

    /// The ConfigMap Velero reads the rules from (velero.io/docs/v1.19/restore-resource-modifiers:
    /// one key, a YAML document of `version: v1` and `resourceModifierRules`).
    public static func modifiersConfigMap(workload: String, veleroNamespace: String, rules: [[String: any Sendable]]) throws -> [String: any Sendable] {
        let text = try RenderedFile(path: "modifiers.yaml", objects: [["version": "v1", "resourceModifierRules": rules]]).yamlBody()
        return [
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": ["name": modifiersName(workload: workload), "namespace": veleroNamespace,
                         "labels": DrillManifests.labels.merging([DrillManifests.workloadLabel: workload]) { a, _ in a }] as [String: any Sendable],
            "data": ["modifiers.yaml": text],
        ]
    }

    /// The Kubernetes API server as a pod reaches it: the addresses and ports of the `kubernetes`
    /// Service's EndpointSlice (default/kubernetes). Network plugins match a policy after the
    /// Service's DNAT, on these, not on the Service's address and port 443.
    public struct APIServer: Sendable, Equatable {
        public var addresses: [String]
        public var ports: [Int]
        public init(addresses: [String], ports: [Int]) {
            self.addresses = addresses
            self.ports = ports
        }

        /// The endpoints of an EndpointSlice (discovery.k8s.io/v1): ready addresses, TCP ports.
        public static func from(endpointSlice o: [String: Any]) -> APIServer {
            let endpoints = o["endpoints"] as? [[String: Any]] ?? []
            let ready = endpoints.filter { ($0["conditions"] as? [String: Any])?["ready"] as? Bool ?? true }
            let ports = (o["ports"] as? [[String: Any]] ?? []).filter { ($0["protocol"] as? String ?? "TCP") == "TCP" }.compactMap { $0["port"] as? Int }
            return APIServer(addresses: ready.flatMap { $0["addresses"] as? [String] ?? [] }.sorted(), ports: ports.sorted())
        }

        var peers: [[String: any Sendable]] {
            addresses.map { ["ipBlock": ["cidr": $0 + ($0.contains(":") ? "/128" : "/32")]] as [String: any Sendable] }
        }
        var summary: String {
            addresses.map { a in ports.map { "\(a.contains(":") ? "[\(a)]" : a):\($0)" }.joined(separator: ", ") }.joined(separator: ", ")
        }
    }

    /// Where a recovery Cluster's pods may connect besides the scratch namespace: the object
    /// store (its port, and its namespace when it is a Service of the cluster, its address when
    /// it is one) and the Kubernetes API server's endpoints (CNPG's instance manager watches its
    /// Cluster), nothing else.
    public struct Egress: Sendable, Equatable {
        public var objectStorePeer: [String: any Sendable]
        /// nil: any port.
        public var objectStorePort: Int?
        public var apiServer: APIServer
        public var summary: String

        public static func == (a: Egress, b: Egress) -> Bool { a.summary == b.summary && a.apiServer == b.apiServer }

        public init(endpoint: String, apiServer: APIServer) {
            let url = URLComponents(string: endpoint)
            let host = url?.host ?? ""
            let port = url?.port ?? (url?.scheme == "http" ? 80 : 443)
            objectStorePort = port
            self.apiServer = apiServer
            let labels = host.split(separator: ".").map(String.init)
            if let svc = labels.firstIndex(of: "svc"), svc >= 2 {
                // Network plugins match a policy's ports after the Service's DNAT, on the pod's
                // port (Rook's RGW listens on 8080 behind port 80): the namespace, any port.
                let ns = labels[svc - 1]
                objectStorePeer = ["namespaceSelector": ["matchLabels": ["kubernetes.io/metadata.name": ns]]]
                objectStorePort = nil
                summary = "namespace \(ns)"
            } else if host.contains(":") || (labels.count == 4 && labels.allSatisfy { UInt8($0) != nil }) {
                let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
                objectStorePeer = ["ipBlock": ["cidr": bare + (bare.contains(":") ? "/128" : "/32")]]
                summary = "\(bare) port \(port)"
            } else {
                // A name outside the cluster has no address a NetworkPolicy can hold: the port only.
                objectStorePeer = ["ipBlock": ["cidr": "0.0.0.0/0"]]
                summary = "any address on port \(port) (\(host) is not a cluster Service or an address)"
            }
        }
    }

    /// The NetworkPolicies of a scratch namespace, created before anything is restored into it:
    /// every pod denied all traffic but to and from its own namespace, DNS, and drctl's
    /// namespace; the recovery Clusters' pods may also reach the object store and the API
    /// server, and CNPG's operator may reach them.
    public static func networkPolicies(namespace: String, drctlNamespace: String, cnpgNamespace: String, clusters: [String],
                                       egress: Egress) -> [[String: any Sendable]] {
        func meta(_ name: String) -> [String: any Sendable] {
            ["name": name, "namespace": namespace, "labels": DrillManifests.labels]
        }
        func inNamespace(_ ns: String) -> [String: any Sendable] { ["namespaceSelector": ["matchLabels": ["kubernetes.io/metadata.name": ns]]] }
        let dns: [String: any Sendable] = [
            "to": [["namespaceSelector": ["matchLabels": ["kubernetes.io/metadata.name": "kube-system"]],
                    "podSelector": ["matchLabels": ["k8s-app": "kube-dns"]]] as [String: any Sendable]],
            "ports": [["protocol": "UDP", "port": 53], ["protocol": "TCP", "port": 53]] as [[String: any Sendable]],
        ]
        var out: [[String: any Sendable]] = [[
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta("drctl-drill-seal"),
            "spec": [
                "podSelector": [String: any Sendable](),
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [["from": [["podSelector": [String: any Sendable]()] as [String: any Sendable], inNamespace(drctlNamespace)]] as [String: any Sendable]],
                "egress": [["to": [["podSelector": [String: any Sendable]()] as [String: any Sendable]]] as [String: any Sendable], dns],
            ] as [String: any Sendable],
        ]]
        for c in clusters {
            out.append([
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": meta("drctl-drill-recovery-\(c)"),
                "spec": [
                    "podSelector": ["matchLabels": [cnpgClusterLabel: c]],
                    "policyTypes": ["Ingress", "Egress"],
                    // CNPG's operator reads each instance's status on 8000 and connects on 5432.
                    "ingress": [["from": [inNamespace(cnpgNamespace)], "ports": [["protocol": "TCP", "port": 8000], ["protocol": "TCP", "port": 5432]] as [[String: any Sendable]]] as [String: any Sendable]],
                    "egress": [
                        egress.objectStorePort.map { ["to": [egress.objectStorePeer], "ports": [["protocol": "TCP", "port": $0] as [String: any Sendable]]] as [String: any Sendable] }
                            ?? ["to": [egress.objectStorePeer]],
                        ["to": egress.apiServer.peers,
                         "ports": egress.apiServer.ports.map { ["protocol": "TCP", "port": $0] as [String: any Sendable] }] as [String: any Sendable],
                    ],
                ] as [String: any Sendable],
            ])
        }
        return out
    }

    /// One line per measure, for the evidence.
    public static func sealSummary(mappings: [Mapping], clusters: [String], egress: Egress, modifiers: Int) -> [String] {
        var lines = mappings.map { "velero: \($0.source) restored into \($0.scratch) only" }
        lines.append("velero: no cluster-scoped resources; not restored: \(excludedResources.count) kinds (production's CNPG objects, Velero's, " +
                     "network policies, endpoints, ingresses and routes, certificates, alert rules, external secrets) and anything labelled \(cnpgClusterLabel)")
        lines.append("network: default deny; allowed: own namespace, cluster DNS, ingress from drctl" +
                     (clusters.isEmpty ? "" : "; recovery Cluster pods (\(clusters.joined(separator: ", "))) also to the object store (\(egress.summary)) and the API server (\(egress.apiServer.summary))"))
        lines.append("pod security: enforce \(podSecurityLabels["pod-security.kubernetes.io/enforce"]!)")
        lines.append("modifiers: CronJobs suspended" + (modifiers > 0 ? ", and \(modifiers) rule(s) of the policy" : ""))
        return lines
    }
}

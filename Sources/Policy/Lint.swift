import Foundation
import Support
/// The checks that need the whole policy set: references, name clashes, archive collisions,
/// prefixes, and whether schedules and retention can meet the objectives. Loading has already
/// reported syntax, types, unknown fields and invalid cron.
public enum Linter {
    public static func lint(_ set: PolicySet, into d: Diagnostics) {
        duplicateNames(set, d)
        for store in set.objectStores { prefixes(store, d) }
        for policy in set.backupPolicies {
            if set.objectStore(named: policy.objectStore.value) == nil {
                let known = set.objectStores.map(\.name.value)
                var msg = "spec.objectStore: no ObjectStore named '\(policy.objectStore.value)'"
                if let s = closest(policy.objectStore.value, among: known) { msg += " (did you mean '\(s)'?)" }
                else if !known.isEmpty { msg += " (defined: \(known.sorted().joined(separator: ", ")))" }
                d.error(policy.objectStore.location, msg)
            }
            objectives(policy, d)
            drillSource(policy, set, d)
        }
        dependencies(set, d)
        if let r = set.rehearsal { rehearsal(r, set, d) }
        sharedArchives(set, d)
        for store in set.objectStores { copies(store, set, d) }
        if let a = set.alerting { alerting(a, d) }
    }

    /// A webhook URL written in the policy ends up in git, the policies ConfigMap and the
    /// AlertmanagerConfig; heartbeat and pager URLs are credentials.
    static func alerting(_ a: AlertingPolicy, _ d: Diagnostics) {
        for r in a.receivers {
            if case .webhook(let url?, nil) = r.target {
                d.warning(r.name.location, "spec.receivers[].webhook.url of '\(r.name.value)' is written in the policy (a URL on \(URLComponents(string: url)?.host ?? "?")): a heartbeat or pager URL is a credential; give it in a Secret (urlSecret)")
            }
        }
    }

    /// A copy goes to another, known store, never onto the objects it copies, and is held to an
    /// objective no looser than the RPO of the workloads it protects.
    static func copies(_ store: ObjectStorePolicy, _ set: PolicySet, _ d: Diagnostics) {
        var seen = Set<String>()
        for copy in store.copies {
            let name = copy.to.value
            guard let target = set.objectStore(named: name) else {
                let known = set.objectStores.map(\.name.value).filter { $0 != store.name.value }
                var msg = "spec.copies[].to: no ObjectStore named '\(name)'"
                if let s = closest(name, among: known) { msg += " (did you mean '\(s)'?)" }
                d.error(copy.to.location, msg)
                continue
            }
            if !seen.insert(name).inserted { d.error(copy.to.location, "spec.copies[].to: '\(name)' is named twice") }
            if name == store.name.value {
                d.error(copy.to.location, "spec.copies[].to: a copy of ObjectStore '\(name)' onto itself is no copy")
                continue
            }
            if sameBucket(store, target) {
                for kind in copy.kinds {
                    let (from, to) = (store.prefix(kind), target.prefix(kind))
                    let overlaps = from == to || from.isEmpty || to.isEmpty || from.hasPrefix(to + "/") || to.hasPrefix(from + "/")
                    if overlaps {
                        d.error(copy.to.location, "spec.copies[].to: '\(name)' is the same bucket (\(store.endpoint.value) \(store.bucket.value)) and its \(kind.rawValue) prefix '\(to)' overlaps '\(from)': the copy would be written onto what it copies")
                    }
                }
            }
            // A copy that keeps less than its source would lose what the source still has (and get
            // it again at the next copy): its own retention may only keep longer.
            if let r = copy.retention {
                for p in set.backupPolicies where p.objectStore.value == store.name.value {
                    for c in p.cnpg where r.window.value.seconds < c.retention.value.seconds {
                        d.warning(r.window.location, "spec.copies[].retention.window \(r.window.value) is shorter than \(p.name.value)/\(c.cluster.value)'s retention \(c.retention.value): the copy would prune what its source keeps, and the next copy would bring it back")
                    }
                }
            }
            guard let lag = copy.maxLag else { continue }
            for p in set.backupPolicies where p.objectStore.value == store.name.value && lag.value.seconds > p.rpo.value.seconds {
                d.warning(lag.location, "spec.copies[].maxLag \(lag.value) is looser than workload \(p.name.value)'s RPO \(p.rpo.value): losing this store leaves only the copy, older than the RPO allows")
            }
        }
    }

    /// `drill.from` names a copy of the workload's store: a drill from anywhere else would prove nothing about this workload.
    static func drillSource(_ p: BackupPolicy, _ set: PolicySet, _ d: Diagnostics) {
        guard let from = p.drill?.from, let store = set.objectStore(named: p.objectStore.value), from.value != store.name.value else { return }
        guard store.copies.contains(where: { $0.to.value == from.value }) else {
            let copies = store.copies.map(\.to.value)
            d.error(from.location, "spec.drill.from: '\(from.value)' is not a copy of ObjectStore \(store.name.value) (its spec.copies: \(copies.isEmpty ? "none" : copies.joined(separator: ", ")))")
            return
        }
        if let c = store.copies.first(where: { $0.to.value == from.value }), !c.kinds.contains(.barman) && !p.cnpg.isEmpty {
            d.error(from.location, "spec.drill.from: the copy to '\(from.value)' does not take barman objects (spec.copies[].prefixes), so it holds none of \(p.name.value)'s databases")
        }
    }

    /// `dependsOn` names other workloads, and no chain of them comes back to where it started.
    static func dependencies(_ set: PolicySet, _ d: Diagnostics) {
        let names = Set(set.backupPolicies.map(\.name.value))
        for p in set.backupPolicies {
            for dep in p.dependsOn where !names.contains(dep.value) || dep.value == p.name.value {
                d.error(dep.location, dep.value == p.name.value ? "spec.dependsOn: \(p.name.value) cannot wait for itself"
                        : "spec.dependsOn: no BackupPolicy named '\(dep.value)'\(closest(dep.value, among: Array(names)).map { " (did you mean '\($0)'?)" } ?? "")")
            }
        }
        if let cycle = SiteOrder.cycle(set.backupPolicies.map { ($0.name.value, $0.dependsOn.map(\.value)) }),
           let first = set.backupPolicies.first(where: { $0.name.value == cycle[0] }) {
            d.error(first.dependsOn.first?.location ?? first.location, "spec.dependsOn: \(cycle.joined(separator: " -> ")) waits for itself: no order restores them")
        }
    }

    /// A rehearsal comes back from a copy: every workload's store must be copied there (with its
    /// databases), or losing the site loses that workload.
    static func rehearsal(_ r: RehearsalPolicy, _ set: PolicySet, _ d: Diagnostics) {
        guard set.objectStore(named: r.from.value) != nil else {
            d.error(r.from.location, "spec.from: no ObjectStore named '\(r.from.value)'\(closest(r.from.value, among: set.objectStores.map(\.name.value)).map { " (did you mean '\($0)'?)" } ?? "")")
            return
        }
        for p in set.backupPolicies {
            guard let store = set.objectStore(named: p.objectStore.value) else { continue }
            if store.name.value == r.from.value {
                d.warning(r.from.location, "spec.from: workload \(p.name.value) keeps its backups on \(r.from.value) itself: losing that site loses them, so the rehearsal proves nothing about it")
            } else if !store.copies.contains(where: { $0.to.value == r.from.value }) {
                d.error(r.from.location, "spec.from: workload \(p.name.value)'s ObjectStore \(store.name.value) is not copied to \(r.from.value) (its spec.copies: \(store.copies.isEmpty ? "none" : store.copies.map(\.to.value).joined(separator: ", "))): the site could not come back without it")
            }
        }
        for m in set.backupPolicies.filter({ $0.rto.value.seconds > r.rto.value.seconds }) {
            d.warning(m.rto.location, "spec.objectives.rto \(m.rto.value) of \(m.name.value) is longer than the site's RTO \(r.rto.value) (kind: Rehearsal \(r.name.value)): the site cannot be back before it")
        }
    }

    /// Two stores naming the same endpoint and bucket.
    static func sameBucket(_ a: ObjectStorePolicy, _ b: ObjectStorePolicy) -> Bool {
        func host(_ e: String) -> String { e.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "/")) }
        return host(a.endpoint.value) == host(b.endpoint.value) && a.bucket.value == b.bucket.value
    }

    static func duplicateNames(_ set: PolicySet, _ d: Diagnostics) {
        for (kind, names) in [("ObjectStore", set.objectStores.map(\.name)), ("BackupPolicy", set.backupPolicies.map(\.name))] {
            var first: [String: SourceLocation] = [:]
            for n in names {
                if let earlier = first[n.value] {
                    d.error(n.location, "duplicate \(kind) name '\(n.value)' (first defined at \(earlier))")
                } else {
                    first[n.value] = n.location
                }
            }
        }
        var clusters: [String: SourceLocation] = [:]
        for p in set.backupPolicies {
            for c in p.cnpg {
                let key = "\(c.namespace)/\(c.cluster.value)"
                if let earlier = clusters[key] {
                    d.error(c.cluster.location, "CNPG cluster \(key) is already covered at \(earlier)")
                } else {
                    clusters[key] = c.cluster.location
                }
            }
        }
    }

    /// Velero marks a storage location unavailable when its prefix holds anything but its own
    /// folders (backups, restores, kopia, restic, metadata, plugins).
    static func prefixes(_ store: ObjectStorePolicy, _ d: Diagnostics) {
        let velero = store.prefixes.velero.value
        for (what, p) in [("barman", store.prefixes.barman), ("drctl", store.prefixes.drctl)] {
            if velero.isEmpty || p.value == velero || p.value.hasPrefix(velero + "/") {
                d.error(p.location, "spec.prefixes.\(what) '\(p.value)' lies inside Velero's prefix '\(velero.isEmpty ? "(bucket root)" : velero)': Velero marks a storage location unavailable when its prefix holds anything but its own folders; use a sibling prefix")
            }
        }
        if store.prefixes.barman.value == store.prefixes.drctl.value {
            d.error(store.prefixes.drctl.location, "spec.prefixes.drctl must differ from spec.prefixes.barman")
        }
    }

    static func objectives(_ p: BackupPolicy, _ d: Diagnostics) {
        let rpo = p.rpo.value
        if let v = p.velero {
            if v.declaredSchedules == 0 { d.error(v.location, "spec.velero.schedules: at least one schedule is needed") }
            var tiers: [String: SourceLocation] = [:]
            for s in v.schedules {
                if let earlier = tiers[s.tier.value] { d.error(s.tier.location, "duplicate tier '\(s.tier.value)' (first at \(earlier))") }
                tiers[s.tier.value] = s.tier.location
                guard let gap = s.cron.value.longestGap else {
                    d.error(s.cron.location, "schedule '\(s.cron.value.expression)' never runs")
                    continue
                }
                if s.retention.value.seconds < gap {
                    d.error(s.retention.location, "retention \(s.retention.value) is shorter than the time between '\(s.tier.value)' backups (\(TimeSpan.humanize(gap))): each backup expires before the next exists")
                }
            }
            // Without WAL-based recovery, the newest Velero backup is the recovery point.
            if p.cnpg.isEmpty, let best = v.schedules.compactMap({ s in s.cron.value.longestGap.map { (s, $0) } }).min(by: { $0.1 < $1.1 }),
               best.1 > rpo.seconds {
                d.error(p.rpo.location, "objectives.rpo \(rpo) cannot be met: the most frequent Velero schedule ('\(best.0.tier.value)': \(best.0.cron.value.expression)) leaves up to \(TimeSpan.humanize(best.1)) between backups")
            }
        }
        if !p.declaresBackups {
            d.error(p.location, "policy '\(p.name.value)' backs up nothing: give spec.velero and/or spec.cnpg")
        }
        for c in p.cnpg {
            guard let gap = c.schedule.value.longestGap else { continue }
            if c.walEnabled {
                if let t = c.archiveTimeout, t.value.seconds > rpo.seconds {
                    d.error(t.location, "wal.archiveTimeout \(t.value) is longer than objectives.rpo \(rpo): a quiet database may not ship a WAL segment within the RPO")
                }
            } else if gap > rpo.seconds {
                d.error(c.schedule.location, "objectives.rpo \(rpo) cannot be met: WAL archiving is off and base backups are up to \(TimeSpan.humanize(gap)) apart")
            }
            if c.retention.value.seconds < gap {
                d.error(c.retention.location, "retention \(c.retention.value) is shorter than the time between base backups (\(TimeSpan.humanize(gap))): the recovery window could hold no base backup")
            }
            if c.retention.value.seconds < rpo.seconds {
                d.error(c.retention.location, "retention \(c.retention.value) is shorter than objectives.rpo \(rpo)")
            }
        }
    }

    /// Two clusters archiving to one destinationPath + serverName corrupt each other's WAL
    /// history; CNPG refuses with "Expected empty archive" at best.
    static func sharedArchives(_ set: PolicySet, _ d: Diagnostics) {
        var seen: [String: (BackupPolicy, BackupPolicy.CNPGCluster)] = [:]
        for p in set.backupPolicies {
            guard let store = set.objectStore(named: p.objectStore.value) else { continue }
            for c in p.cnpg {
                let key = "\(store.barmanDestination)/\(c.serverName.value)"
                if let (op, oc) = seen[key] {
                    d.error(c.serverName.location, "cluster '\(c.cluster.value)' archives to \(key), as cluster '\(oc.cluster.value)' of policy '\(op.name.value)' does (\(oc.serverName.location)): two clusters in one barman archive overwrite each other's WAL (CNPG: \"Expected empty archive\"); give each its own serverName")
                } else {
                    seen[key] = (p, c)
                }
            }
        }
    }
}

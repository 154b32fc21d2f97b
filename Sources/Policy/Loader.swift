import Foundation
import Support
import Age
import Layout
import Yams

/// Reads policy files into a `PolicySet`, reporting every problem with its file:line:col.
public enum PolicyLoader {
    public static let apiVersion = "drctl.dev/v1alpha1"

    /// Loads every `.yaml`/`.yml` file under the given paths (directories recursively, in name order).
    public static func load(paths: [String], diagnostics: Diagnostics) -> PolicySet {
        var set = PolicySet()
        for file in expand(paths, diagnostics: diagnostics) {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                diagnostics.error(SourceLocation(file: file, line: 1, column: 1), "cannot read file")
                continue
            }
            load(text: text, file: file, into: &set, diagnostics: diagnostics)
        }
        return set
    }

    static func expand(_ paths: [String], diagnostics: Diagnostics) -> [String] {
        var files: [String] = []
        let fm = FileManager.default
        for p in paths {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: p, isDirectory: &isDir) else {
                diagnostics.error(SourceLocation(file: p, line: 1, column: 1), "no such file or directory")
                continue
            }
            if isDir.boolValue {
                let found = (fm.enumerator(atPath: p)?.compactMap { $0 as? String } ?? [])
                    .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
                files += found.map { (p as NSString).appendingPathComponent($0) }
            } else {
                files.append(p)
            }
        }
        return files
    }

    public static func load(text: String, file: String, into set: inout PolicySet, diagnostics: Diagnostics) {
        // Parser.nextRoot throws on a bad document; compose_all's lazy sequence would end quietly.
        var docs: [Node] = []
        do {
            let parser = try Parser(yaml: text)
            while let node = try parser.nextRoot() { docs.append(node) }
        } catch let e as YamlError {
            diagnostics.error(location(of: e, file: file, text: text), "invalid YAML: \(describe(e))")
            return
        } catch {
            diagnostics.error(SourceLocation(file: file, line: 1, column: 1), "invalid YAML: \(error)")
            return
        }
        for doc in docs {
            let root = YNode(node: doc, file: file, diags: diagnostics)
            guard let f = root.fields("document") else { continue }
            let apiVersion = f.string("apiVersion", required: true)
            if let a = apiVersion, a.value != apiVersion_ {
                diagnostics.error(a.location, "apiVersion '\(a.value)' is not \(apiVersion_)")
            }
            let kind = f.oneOf("kind", ["ObjectStore", "BackupPolicy", "Alerting", "Rehearsal"], required: true)
            var name: Located<String>?
            if let meta = f.required("metadata")?.fields("metadata") {
                name = meta.string("name", required: true)
                if let n = name, !isDNSLabel(n.value) {
                    diagnostics.error(n.location, "metadata.name '\(n.value)' must be a DNS label (lower-case letters, digits and '-', at most 63)")
                }
                _ = meta.node("labels"); _ = meta.node("annotations")
                meta.finish(known: ["name", "labels", "annotations"])
            }
            let spec = f.required("spec")?.fields("spec")
            f.finish(known: ["apiVersion", "kind", "metadata", "spec"])
            guard let kind, let name, let spec else { continue }
            switch kind.value {
            case "ObjectStore":
                if let s = objectStore(name, spec) { set.objectStores.append(s) }
            case "Alerting":
                keepFirst(alerting(name, spec), in: &set.alerting, kind: kind.value, name: name, first: set.alerting?.name, diagnostics)
            case "Rehearsal":
                keepFirst(rehearsal(name, spec), in: &set.rehearsal, kind: kind.value, name: name, first: set.rehearsal?.name, diagnostics)
            default:
                if let p = backupPolicy(name, spec, at: root.location) { set.backupPolicies.append(p) }
            }
        }
    }

    private static let apiVersion_ = apiVersion

    /// A kind the set has at most one of: the first stays, a second is an error naming both.
    static func keepFirst<T>(_ value: T?, in slot: inout T?, kind: String, name: Located<String>, first: Located<String>?, _ diagnostics: Diagnostics) {
        guard let value else { return }
        if let first {
            diagnostics.error(name.location, "a second kind: \(kind) ('\(name.value)'); '\(first.value)' at \(first.location) is the one")
        } else {
            slot = value
        }
    }

    static func isDNSLabel(_ s: String) -> Bool {
        s.count <= 63 && !s.isEmpty && s.first!.isLetter && s.last != "-"
            && s.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" }
    }

    static func location(of e: YamlError, file: String, text: String) -> SourceLocation {
        switch e {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
            // libyaml puts an error at the end of a file without a final newline on the line
            // after the last (found by drctl-fuzz policy); point at the end of the last line instead.
            let lines = yamlLines(text)
            if mark.line > lines.count, let last = lines.last {
                return SourceLocation(file: file, line: lines.count, column: last.count + 1)
            }
            return SourceLocation(file: file, line: mark.line, column: mark.column)
        default:
            return SourceLocation(file: file, line: 1, column: 1)
        }
    }

    /// The lines of `text` as YAML counts them: LF, CR, CR LF, NEL, LS and PS end a line.
    package static func yamlLines(_ text: String) -> [Substring.UnicodeScalarView] {
        var lines: [Substring.UnicodeScalarView] = []
        let scalars = Substring(text).unicodeScalars
        var start = scalars.startIndex, i = start
        while i < scalars.endIndex {
            let c = scalars[i]
            if c == "\n" || c == "\r" || c == "\u{85}" || c == "\u{2028}" || c == "\u{2029}" {
                lines.append(scalars[start..<i])
                i = scalars.index(after: i)
                if c == "\r", i < scalars.endIndex, scalars[i] == "\n" { i = scalars.index(after: i) }
                start = i
            } else {
                i = scalars.index(after: i)
            }
        }
        lines.append(scalars[start..<i])
        return lines
    }

    static func describe(_ e: YamlError) -> String {
        switch e {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _):
            return problem
        default:
            return "\(e)"
        }
    }

    // MARK: ObjectStore

    static func objectStore(_ name: Located<String>, _ spec: Fields) -> ObjectStorePolicy? {
        let endpoint = spec.string("endpoint", required: true)
        if let e = endpoint, !(e.value.hasPrefix("http://") || e.value.hasPrefix("https://")) {
            spec.owner.diags.error(e.location, "spec.endpoint '\(e.value)' must be an http:// or https:// URL")
        }
        let bucket = spec.string("bucket", required: true)
        let region = spec.string("region")?.value ?? "us-east-1"
        let pathStyle = spec.bool("pathStyle") ?? true
        var ca: SecretKeyRef?
        if let c = spec.node("caBundle")?.fields("spec.caBundle") {
            if let n = c.string("secretName", required: true), let k = c.string("key", required: true) { ca = SecretKeyRef(name: n.value, key: k.value) }
            c.finish(known: ["secretName", "key"])
        }
        var creds: ObjectStorePolicy.Credentials?
        if let c = spec.required("credentials")?.fields("spec.credentials") {
            let secret = c.string("secretName", required: true)
            creds = secret.map {
                ObjectStorePolicy.Credentials(secretName: $0.value,
                                              accessKeyIdKey: c.string("accessKeyIdKey")?.value ?? "ACCESS_KEY_ID",
                                              secretAccessKeyKey: c.string("secretAccessKeyKey")?.value ?? "SECRET_ACCESS_KEY",
                                              veleroKey: c.string("veleroKey")?.value ?? "cloud")
            }
            c.finish(known: ["secretName", "accessKeyIdKey", "secretAccessKeyKey", "veleroKey"])
        }
        var lock: ObjectStorePolicy.ObjectLock?
        if let l = spec.node("objectLock")?.fields("spec.objectLock") {
            let mode = l.oneOf("mode", ["GOVERNANCE", "COMPLIANCE"], required: true)
            let retention = l.duration("retention", required: true)
            if let mode, let retention { lock = .init(mode: mode.value, retention: retention.value) }
            l.finish(known: ["mode", "retention"])
        }
        let here = spec.location
        var prefixes = ObjectStorePolicy.Prefixes(velero: Located("velero", here), barman: Located("cnpg", here), drctl: Located("drctl", here))
        if let p = spec.node("prefixes")?.fields("spec.prefixes") {
            for (key, path) in [("velero", \ObjectStorePolicy.Prefixes.velero), ("barman", \.barman), ("drctl", \.drctl)] {
                if let v = p.string(key) {
                    let trimmed = v.value.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
                    prefixes[keyPath: path] = Located(trimmed, v.location)
                }
            }
            p.finish(known: ["velero", "barman", "drctl"])
        }
        var copies: [ObjectStorePolicy.Copy] = []
        for item in spec.node("copies")?.items("spec.copies") ?? [] {
            guard let c = item.fields("spec.copies[]") else { continue }
            let to = c.string("to", required: true)
            var kinds = ObjectStorePolicy.Copy.Kind.allCases
            if let listed = c.strings("prefixes") {
                kinds = []
                for k in listed {
                    if let kind = ObjectStorePolicy.Copy.Kind(rawValue: k.value) { if !kinds.contains(kind) { kinds.append(kind) } } else {
                        spec.owner.diags.error(k.location, "spec.copies[].prefixes: '\(k.value)' is not one of barman, velero, drctl")
                    }
                }
                if listed.isEmpty { item.error("spec.copies[].prefixes: name at least one of barman, velero, drctl (or leave it out for all)") }
            }
            let maxLag = c.duration("maxLag")
            var recipients: [String] = []
            if let e = c.node("encryption")?.fields("spec.copies[].encryption") {
                let listed = e.strings("recipients") ?? []
                for r in listed {
                    do { recipients.append(try Age.Recipient(r.value).description) } catch {
                        spec.owner.diags.error(r.location, "spec.copies[].encryption.recipients: \(error)")
                    }
                }
                if listed.isEmpty { e.owner.error("spec.copies[].encryption: name at least one age recipient (age1…, from age-keygen)") }
                e.finish(known: ["recipients"])
            }
            // The copy's own retention, for `drctl prune --store <copy>`: it may keep longer than the source.
            let retention = c.node("retention").flatMap { Self.retention($0, field: "spec.copies[].retention", diags: spec.owner.diags, mapping: true) }
            let lock = c.oneOf("objectLock", ["required", "optional"])
            c.finish(known: ["to", "prefixes", "maxLag", "encryption", "retention", "objectLock"])
            if let to {
                copies.append(.init(to: to, kinds: kinds, maxLag: maxLag, recipients: recipients, retention: retention,
                                    requireObjectLock: lock?.value == "required", location: item.location))
            }
        }
        spec.finish(known: ["endpoint", "bucket", "region", "pathStyle", "caBundle", "credentials", "objectLock", "prefixes", "copies"])
        guard let endpoint, let bucket, let creds else { return nil }
        return ObjectStorePolicy(name: name, endpoint: endpoint, bucket: bucket, region: region, pathStyle: pathStyle, ca: ca,
                                 credentials: creds, objectLock: lock, prefixes: prefixes, copies: copies)
    }

    // MARK: Alerting

    static func alerting(_ name: Located<String>, _ spec: Fields) -> AlertingPolicy? {
        let am = spec.string("alertmanager")
        if let a = am, !(a.value.hasPrefix("http://") || a.value.hasPrefix("https://")) {
            spec.owner.diags.error(a.location, "spec.alertmanager '\(a.value)' must be an http:// or https:// URL")
        }
        let page = spec.string("statusPage")?.value
        let schedule = spec.node("checkSchedule") != nil ? cron(spec, "checkSchedule", .drctl, what: "spec.checkSchedule") : nil
        var receivers: [AlertingPolicy.Receiver] = []
        func secretRef(_ f: Fields, _ field: String) -> SecretKeyRef? {
            guard let r = f.node(field)?.fields(field) else { return nil }
            defer { r.finish(known: ["secretName", "key"]) }
            guard let n = r.string("secretName", required: true), let k = r.string("key", required: true) else { return nil }
            return SecretKeyRef(name: n.value, key: k.value)
        }
        for item in spec.required("receivers")?.items("spec.receivers") ?? [] {
            guard let r = item.fields("spec.receivers[]") else { continue }
            let rname = r.string("name", required: true)
            if let n = rname, !isDNSLabel(n.value) {
                spec.owner.diags.error(n.location, "spec.receivers[].name '\(n.value)' must be a DNS label")
            }
            if let n = rname, receivers.contains(where: { $0.name.value == n.value }) {
                spec.owner.diags.error(n.location, "spec.receivers[].name '\(n.value)' is given twice")
            }
            let watchdog = r.bool("watchdog") ?? false
            let readBack = r.string("readBack")
            if let u = readBack, !(u.value.hasPrefix("http://") || u.value.hasPrefix("https://")) {
                spec.owner.diags.error(u.location, "spec.receivers[].readBack '\(u.value)' must be an http:// or https:// URL")
            }
            var target: AlertingPolicy.Receiver.Target?
            if let sl = r.node("slack")?.fields("spec.receivers[].slack") {
                let channel = sl.string("channel", required: true)
                let url = secretRef(sl, "apiURL")
                if url == nil { sl.owner.error("spec.receivers[].slack.apiURL: the Secret (secretName, key) holding the incoming webhook URL is required") }
                sl.finish(known: ["channel", "apiURL"])
                if let channel, let url { target = .slack(channel: channel.value, apiURL: url) }
            }
            if let wh = r.node("webhook")?.fields("spec.receivers[].webhook") {
                let url = wh.string("url")
                if let u = url, !(u.value.hasPrefix("http://") || u.value.hasPrefix("https://")) {
                    spec.owner.diags.error(u.location, "spec.receivers[].webhook.url '\(u.value)' must be an http:// or https:// URL")
                }
                let secret = secretRef(wh, "urlSecret")
                if (url == nil) == (secret == nil) { wh.owner.error("spec.receivers[].webhook: give url or urlSecret (a Secret holding it), one of them") }
                wh.finish(known: ["url", "urlSecret"])
                if target != nil { r.owner.error("spec.receivers[]: one of slack or webhook, not both") } else if url != nil || secret != nil { target = .webhook(url: url?.value, urlSecret: secret) }
            } else if target == nil && r.node("slack") == nil {
                r.owner.error("spec.receivers[]: say where it sends: slack or webhook")
            }
            r.finish(known: ["name", "slack", "webhook", "watchdog", "readBack"])
            if let rname, let target { receivers.append(.init(name: rname, target: target, watchdog: watchdog, readBack: readBack?.value)) }
        }
        if !receivers.isEmpty && receivers.allSatisfy(\.watchdog) {
            spec.owner.error("spec.receivers: every receiver is a watchdog; drctl's alerts need one that is not")
        }
        spec.finish(known: ["alertmanager", "statusPage", "checkSchedule", "receivers"])
        return AlertingPolicy(name: name, alertmanager: am, statusPage: page, checkSchedule: schedule, receivers: receivers)
    }

    // MARK: Rehearsal

    static func rehearsal(_ name: Located<String>, _ spec: Fields) -> RehearsalPolicy? {
        let from = spec.string("from", required: true)
        // Monthly by default: a site rehearsal restores everything, so not every night.
        let schedule = spec.has("schedule") ? cron(spec, "schedule", .drctl, what: "spec.schedule") : Located(try! Cron("0 3 1 * *", dialect: .drctl), spec.location)
        let rto = spec.duration("rto") ?? Located(TimeSpan(seconds: 3600), spec.location)
        let parallel = spec.int("parallel", range: 1...32) ?? 2
        let mode = spec.oneOf("mode", ["host", "cluster"])?.value
        spec.finish(known: ["from", "schedule", "rto", "parallel", "mode"])
        guard let from, let schedule else { return nil }
        return RehearsalPolicy(name: name, from: from, schedule: schedule, rto: rto, parallel: parallel, mode: mode)
    }

    // MARK: BackupPolicy

    static func cron(_ f: Fields, _ key: String, _ dialect: Cron.Dialect, what: String) -> Located<Cron>? {
        guard let s = f.string(key, required: true) else { return nil }
        do {
            return Located(try Cron(s.value, dialect: dialect), s.location)
        } catch {
            f.owner.diags.error(s.location, "\(what): invalid cron '\(s.value)': \(error)")
            return nil
        }
    }

    static func backupPolicy(_ name: Located<String>, _ spec: Fields, at location: SourceLocation) -> BackupPolicy? {
        let diags = spec.owner.diags
        let store = spec.string("objectStore", required: true)
        let namespaces = spec.strings("namespaces") ?? []
        if namespaces.isEmpty { diags.error(spec.location, "spec.namespaces: list the namespaces this policy covers (\"*\" for all)") }
        let clusterResources = spec.bool("includeClusterResources") ?? false
        var rpo: Located<TimeSpan>?, rto: Located<TimeSpan>?
        if let o = spec.required("objectives")?.fields("spec.objectives") {
            rpo = o.duration("rpo", required: true)
            rto = o.duration("rto", required: true)
            o.finish(known: ["rpo", "rto"])
        }
        let velero = spec.node("velero").flatMap { veleroSpec($0) }
        var clusters: [BackupPolicy.CNPGCluster] = []
        if let list = spec.node("cnpg")?.items("spec.cnpg") {
            for item in list {
                if let c = cnpgCluster(item, defaultNamespace: namespaces.first?.value ?? "default") { clusters.append(c) }
            }
        }
        let drill = spec.node("drill").flatMap { drillSpec($0) }
        let declares = spec.has("velero") || spec.has("cnpg")
        let dependsOn = spec.strings("dependsOn") ?? []
        spec.finish(known: ["objectStore", "namespaces", "includeClusterResources", "objectives", "velero", "cnpg", "drill", "dependsOn"])
        guard let store, let rpo, let rto else { return nil }
        var p = BackupPolicy(name: name, location: location, objectStore: store, namespaces: namespaces, includeClusterResources: clusterResources,
                             rpo: rpo, rto: rto, velero: velero, cnpg: clusters, drill: drill, declaresBackups: declares)
        p.dependsOn = dependsOn
        return p
    }

    static func veleroSpec(_ node: YNode) -> BackupPolicy.Velero? {
        guard let v = node.fields("spec.velero") else { return nil }
        let volumes = v.oneOf("volumes", ["snapshot", "fileSystem", "none"]).flatMap { BackupPolicy.Velero.Volumes(rawValue: $0.value) } ?? .snapshot
        var schedules: [BackupPolicy.Schedule] = []
        let scheduleItems = v.required("schedules")?.items("spec.velero.schedules") ?? []
        for item in scheduleItems {
            guard let s = item.fields("spec.velero.schedules[]") else { continue }
            let tier = s.string("tier", required: true)
            let cron = cron(s, "schedule", .standard, what: "spec.velero.schedules[].schedule")
            let retention = s.duration("retention", required: true)
            s.finish(known: ["tier", "schedule", "retention"])
            if let tier, let cron, let retention { schedules.append(.init(tier: tier, cron: cron, retention: retention)) }
        }
        var hooks: [BackupPolicy.Hook] = []
        for item in v.node("hooks")?.items("spec.velero.hooks") ?? [] {
            guard let h = item.fields("spec.velero.hooks[]") else { continue }
            let name = h.string("name", required: true)
            let when = h.oneOf("when", ["pre", "post"])?.value ?? "pre"
            let container = h.string("container", required: true)
            let command = h.strings("command") ?? []
            if command.isEmpty { item.error("spec.velero.hooks[].command: give the command to run, as a list") }
            let onError = h.oneOf("onError", ["Continue", "Fail"])?.value ?? "Fail"
            let timeout = h.duration("timeout")?.value ?? TimeSpan(dialect: .policy, "30s")!
            var selector: [String: String] = [:]
            if let l = h.node("labelSelector")?.fields("spec.velero.hooks[].labelSelector") {
                if case .mapping(let m) = l.owner.node {
                    for (k, val) in m { if let ks = k.string, let vs = val.string { selector[ks] = vs; _ = l.node(ks) } }
                }
            }
            h.finish(known: ["name", "when", "container", "command", "onError", "timeout", "labelSelector"])
            if let name, let container, !command.isEmpty {
                hooks.append(.init(name: name.value, when: when, container: container.value, command: command.map(\.value),
                                   onError: onError, timeout: timeout, labelSelector: selector))
            }
        }
        let excluded = v.strings("excludedResources")?.map(\.value) ?? []
        let databaseVolumes = v.oneOf("databaseVolumes", ["skip", "include"]).flatMap { BackupPolicy.Velero.DatabaseVolumes(rawValue: $0.value) } ?? .skip
        v.finish(known: ["volumes", "schedules", "hooks", "excludedResources", "databaseVolumes"])
        return .init(location: node.location, volumes: volumes, schedules: schedules, declaredSchedules: scheduleItems.count,
                     hooks: hooks, excludedResources: excluded, databaseVolumes: databaseVolumes)
    }

    static func cnpgCluster(_ node: YNode, defaultNamespace: String) -> BackupPolicy.CNPGCluster? {
        guard let c = node.fields("spec.cnpg[]") else { return nil }
        let cluster = c.string("cluster", required: true)
        let explicit = c.string("namespace")
        let namespace = explicit?.value ?? defaultNamespace
        if explicit == nil && VeleroNamespaces.isPattern(defaultNamespace) {
            c.owner.error("spec.cnpg[]: give the cluster's namespace (spec.cnpg[].namespace): spec.namespaces starts with the pattern '\(defaultNamespace)', which names no namespace")
        }
        let serverName = c.string("serverName")
        let method = c.oneOf("method", ["barmanObjectStore", "plugin"]).flatMap { BackupPolicy.CNPGCluster.Method(rawValue: $0.value) } ?? .plugin
        var schedule: Located<Cron>?, target = "prefer-standby"
        if let b = c.required("baseBackup")?.fields("spec.cnpg[].baseBackup") {
            schedule = cnpgCron(b)
            target = b.oneOf("target", ["prefer-standby", "primary"])?.value ?? target
            b.finish(known: ["schedule", "target"])
        }
        var walEnabled = true, walCompression: String? = "gzip", walParallel = 2
        var archiveTimeout: Located<TimeSpan>?
        if let w = c.node("wal")?.fields("spec.cnpg[].wal") {
            walEnabled = w.bool("enabled") ?? true
            if let comp = w.oneOf("compression", ["none", "gzip", "bzip2", "snappy", "lz4", "xz", "zstd"]) {
                walCompression = comp.value == "none" ? nil : comp.value
                Self.checkReadable(comp, field: "spec.cnpg[].wal.compression", node.diags)
            }
            walParallel = w.int("maxParallel", range: 1...64) ?? walParallel
            archiveTimeout = w.duration("archiveTimeout")
            w.finish(known: ["enabled", "compression", "maxParallel", "archiveTimeout"])
        }
        var dataCompression: String? = "gzip", dataJobs = 2
        if let d = c.node("data")?.fields("spec.cnpg[].data") {
            if let comp = d.oneOf("compression", ["none", "gzip", "bzip2", "snappy"]) {
                dataCompression = comp.value == "none" ? nil : comp.value
                Self.checkReadable(comp, field: "spec.cnpg[].data.compression", node.diags)
            }
            dataJobs = d.int("jobs", range: 1...64) ?? dataJobs
            d.finish(known: ["compression", "jobs"])
        }
        let parsed = c.required("retention").flatMap { Self.retention($0, field: "spec.cnpg[].retention", diags: node.diags, mapping: false) }
        let retention = parsed?.window
        let heartbeat = c.node("heartbeat").flatMap { Self.heartbeat($0) }
        c.finish(known: ["cluster", "namespace", "serverName", "method", "baseBackup", "wal", "data", "retention", "heartbeat"])
        guard let cluster, let schedule, let retention else { return nil }
        return .init(cluster: cluster, namespace: namespace, serverName: serverName ?? cluster, method: method, schedule: schedule,
                     target: target, walEnabled: walEnabled, walCompression: walCompression, walMaxParallel: walParallel,
                     archiveTimeout: archiveTimeout, dataCompression: dataCompression, dataJobs: dataJobs, retention: retention,
                     tiers: parsed?.tiers ?? .none, heartbeat: heartbeat)
    }

    static func heartbeat(_ node: YNode) -> BackupPolicy.Heartbeat? {
        guard let h = node.fields("spec.cnpg[].heartbeat") else { return nil }
        let every = h.duration("every") ?? Located(TimeSpan(seconds: 60), node.location)
        if every.value.seconds < 1 || every.value.seconds > 3600 {
            node.diags.error(every.location, "spec.cnpg[].heartbeat.every: \(every.value) is not between 1s and 1h (a heartbeat is what measures the RPO in the data)")
        }
        let db = h.string("database", required: true)
        let secret = h.string("secretName", required: true)
        if let s = secret, !isDNSLabel(s.value) && !s.value.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == ".") }) {
            node.diags.error(s.location, "spec.cnpg[].heartbeat.secretName '\(s.value)' is not a Secret name")
        }
        let host = h.string("host")?.value
        let port = h.int("port", range: 1...65535) ?? 5432
        h.finish(known: ["every", "database", "secretName", "host", "port"])
        guard let db, let secret, checkDatabaseName(db, field: "spec.cnpg[].heartbeat.database", node.diags) else { return nil }
        return .init(every: every, database: db.value, secretName: secret.value, host: host, port: port, location: node.location)
    }

    /// A retention: a recovery window (`7d`), or with long-term tiers
    /// `{window: 7d, daily: 7, weekly: 4, monthly: 12}` (`mapping`: only the second form).
    static func retention(_ n: YNode, field: String, diags: Diagnostics, mapping: Bool) -> BackupPolicy.Retention? {
        func window(_ s: Located<TimeSpan>?) -> Located<TimeSpan>? {
            guard let s else { return nil }
            guard ["d", "w", "mo"].contains(s.value.unit) else {
                diags.error(s.location, "\(field): CNPG's recovery window is counted in days, weeks or months (e.g. 7d, 4w, 3mo), not '\(s.value)'")
                return nil
            }
            return s
        }
        if !mapping, n.string != nil {
            guard let s = n.string, let d = TimeSpan(dialect: .policy, s) else {
                n.error("\(field): '\(n.string ?? "")' is not a duration (examples: 7d, 4w, 3mo), nor {window: 7d, daily: 7, weekly: 4, monthly: 12}")
                return nil
            }
            return window(Located(d, n.location)).map { .init(window: $0, tiers: .none) }
        }
        guard let f = n.fields(field) else { return nil }
        let w = window(f.duration("window", required: true))
        let tiers = RetentionTiers(daily: f.int("daily", range: 0...3660) ?? 0, weekly: f.int("weekly", range: 0...520) ?? 0,
                                   monthly: f.int("monthly", range: 0...1200) ?? 0)
        f.finish(known: ["window", "daily", "weekly", "monthly"])
        return w.map { .init(window: $0, tiers: tiers) }
    }

    /// CNPG's ScheduledBackup takes six fields, seconds first, and reads a five-field
    /// expression with the seconds shifted in: `0 2 * * *` runs at minute 2 of every hour.
    static func cnpgCron(_ b: Fields) -> Located<Cron>? {
        guard let s = b.string("schedule", required: true) else { return nil }
        let fields = s.value.split(separator: " ").filter { !$0.hasPrefix("CRON_TZ=") && !$0.hasPrefix("TZ=") }
        if fields.count == 5 && !s.value.hasPrefix("@") {
            let meant = "0 " + fields.joined(separator: " ")
            var what = "a different schedule"
            if let c = try? Cron(s.value, dialect: .cnpg), let gap = c.longestGap { what = "every \(TimeSpan.humanize(gap))" }
            b.owner.diags.error(s.location, "spec.cnpg[].baseBackup.schedule: '\(s.value)' has five fields, but CNPG schedules have six (seconds first) and CNPG reads this one as \(what); write '\(meant)'")
            return nil
        }
        do {
            return Located(try Cron(s.value, dialect: .cnpg), s.location)
        } catch {
            b.owner.diags.error(s.location, "spec.cnpg[].baseBackup.schedule: invalid cron '\(s.value)': \(error)")
            return nil
        }
    }

    /// barman-cloud offers more compressions than drctl reads: a backup drctl cannot restore in a
    /// drill is a backup nobody has proven.
    static func checkReadable(_ comp: Located<String>, field: String, _ diags: Diagnostics) {
        guard !BarmanCompression.readableNames.contains(comp.value) else { return }
        diags.error(comp.location, "\(field): '\(comp.value)' is a compression barman-cloud writes but drctl cannot read yet: restore, verify and copy read gzip and uncompressed archives only, so these backups could not be proven (use gzip)")
    }

    /// A check's database is a name, never a connection string: psql reads a `-d` value with
    /// `=` or a `postgres://` prefix as one, and would connect wherever it says.
    static func checkDatabaseName(_ db: Located<String>, field: String, _ diags: Diagnostics) -> Bool {
        guard DatabaseName.isValid(db.value) else {
            diags.error(db.location, "\(field): '\(db.value)' is not a database name (letters, digits, _ $ . -, at most 63 bytes): a value like this would make psql connect elsewhere")
            return false
        }
        return true
    }

    static func drillSpec(_ node: YNode) -> BackupPolicy.Drill? {
        guard let d = node.fields("spec.drill") else { return nil }
        let schedule = cron(d, "schedule", .drctl, what: "spec.drill.schedule")
        var checks: [BackupPolicy.Check] = []
        for item in d.node("checks")?.items("spec.drill.checks") ?? [] {
            guard let c = item.fields("spec.drill.checks[]") else { continue }
            if let s = c.node("sql")?.fields("spec.drill.checks[].sql") {
                let cl = s.string("cluster", required: true), db = s.string("database", required: true)
                let q = s.string("query", required: true), e = s.string("expect", required: true)
                if let e, Expectation(e.value) == nil {
                    node.diags.error(e.location, "spec.drill.checks[].sql.expect: '\(e.value)' is not an expectation (e.g. '>= 1', '= 42', 'nonempty')")
                }
                s.finish(known: ["cluster", "database", "query", "expect"])
                if let cl, let db, let q, let e, Self.checkDatabaseName(db, field: "spec.drill.checks[].sql.database", node.diags) { checks.append(.sql(cluster: cl.value, database: db.value, query: q.value, expect: e.value)) }
            } else if let f = c.node("freshness")?.fields("spec.drill.checks[].freshness") {
                let cl = f.string("cluster", required: true), db = f.string("database", required: true)
                let t = f.string("table", required: true), col = f.string("column", required: true)
                f.finish(known: ["cluster", "database", "table", "column"])
                if let cl, let db, let t, let col, Self.checkDatabaseName(db, field: "spec.drill.checks[].freshness.database", node.diags) { checks.append(.freshness(cluster: cl.value, database: db.value, table: t.value, column: col.value)) }
            } else if c.has("podsReady") {
                _ = c.node("podsReady")
                checks.append(.podsReady)
            } else if let r = c.node("resourceCount")?.fields("spec.drill.checks[].resourceCount") {
                let k = r.string("kind", required: true), m = r.int("min", range: 0...1_000_000) ?? 1
                r.finish(known: ["kind", "min"])
                if let k { checks.append(.resourceCount(kind: k.value, min: m)) }
            } else if !c.has("sql") && !c.has("freshness") && !c.has("resourceCount") {
                item.error("spec.drill.checks[]: a check is one of sql, freshness, podsReady, resourceCount")
            }
            c.finish(known: ["sql", "freshness", "podsReady", "resourceCount"])
        }
        var modifiers: [BackupPolicy.Modifier] = []
        for item in d.node("modifiers")?.items("spec.drill.modifiers") ?? [] {
            if let m = modifier(item) { modifiers.append(m) }
        }
        var preload: [String] = []
        for item in d.node("preloadLibraries")?.items("spec.drill.preloadLibraries") ?? [] {
            guard let name = item.string else { item.error("spec.drill.preloadLibraries[]: a library name"); continue }
            if LibraryName.isValid(name) { preload.append(name) } else {
                item.error("spec.drill.preloadLibraries[]: '\(name)' is not a library name (letters, digits and _, looked up in PostgreSQL's $libdir; no paths or lists)")
            }
        }
        let from = d.string("from")
        d.finish(known: ["schedule", "checks", "modifiers", "preloadLibraries", "from"])
        guard let schedule else { return nil }
        return .init(schedule: schedule, checks: checks, modifiers: modifiers, preloadLibraries: preload, from: from)
    }

    static func modifier(_ item: YNode) -> BackupPolicy.Modifier? {
        let what = "spec.drill.modifiers[]"
        guard let m = item.fields(what) else { return nil }
        let conditions = m.required("conditions")?.fields("\(what).conditions")
        let group = conditions?.string("groupResource", required: true)
        let regex = conditions?.string("resourceNameRegex")
        if let regex, (try? NSRegularExpression(pattern: regex.value)) == nil {
            item.diags.error(regex.location, "\(what).conditions.resourceNameRegex: '\(regex.value)' is not a regular expression")
        }
        var labels: [String: String] = [:]
        if let sel = conditions?.node("labelSelector")?.fields("\(what).conditions.labelSelector") {
            if let ml = sel.node("matchLabels"), case .mapping(let map) = ml.node {
                for (k, v) in map { if let ks = k.string, let vs = v.string { labels[ks] = vs } }
            }
            sel.finish(known: ["matchLabels"])
        }
        conditions?.finish(known: ["groupResource", "resourceNameRegex", "labelSelector"])
        var patches: [BackupPolicy.Modifier.Patch] = []
        for p in m.required("patches")?.items("\(what).patches") ?? [] {
            guard let f = p.fields("\(what).patches[]") else { continue }
            let op = f.oneOf("operation", BackupPolicy.Modifier.operations, required: true)
            let path = f.string("path", required: true)
            if let path, !path.value.hasPrefix("/") {
                item.diags.error(path.location, "\(what).patches[].path: '\(path.value)' is not a JSON pointer (it starts with /, e.g. /spec/replicas)")
            }
            let value = f.node("value").flatMap { $0.isNull ? nil : $0.string }
            let from = f.string("from")
            f.finish(known: ["operation", "path", "value", "from"])
            if ["add", "replace", "test"].contains(op?.value ?? "") && value == nil { p.error("\(what).patches[]: '\(op!.value)' needs a value") }
            if ["copy", "move"].contains(op?.value ?? "") && from == nil { p.error("\(what).patches[]: '\(op!.value)' needs from") }
            if let op, let path { patches.append(.init(operation: op.value, path: path.value, value: value, from: from?.value)) }
        }
        m.finish(known: ["conditions", "patches"])
        guard let group, !patches.isEmpty else { return nil }
        return .init(groupResource: group.value, resourceNameRegex: regex?.value, matchLabels: labels, patches: patches)
    }
}

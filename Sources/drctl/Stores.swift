import Age
import ArgumentParser
import Catalog
import Foundation
import HTTP
import Layout
import ObjectStore
import SigV4
import Policy
import Records
import Replication
import Storage
import Support

// The composition root: the only place outside the S3 driver where drctl's S3 client is built
// and named. Engines get a StoreOpener and see only Storage.

extension S3Options {
    /// A client for a policy's ObjectStore. A policy's store is a declaration: its endpoint,
    /// region and credentials Secret (where deploy/ mounts it) win over the shell's ambient
    /// `AWS_*`, so a deletion decided by one policy never lands in the bucket another endpoint
    /// in the environment names. Only flags override it; a disagreeing environment is named once.
    func makeClient(for store: ObjectStorePolicy) throws -> S3Client {
        let ambient = CredentialResolver(profile: profile)
        let name = store.name.value
        if endpoint == nil, let e = ambient.endpoint(), e != store.endpoint.value {
            warnOnce("the environment names endpoint \(e) (AWS_ENDPOINT_URL or the profile); ObjectStore \(name) says \(store.endpoint.value): using the policy's (--endpoint overrides it)")
        }
        if region == nil, let r = ambient.explicitRegion(), r != store.region {
            warnOnce("the environment names region \(r); ObjectStore \(name) says \(store.region): using the policy's (--region overrides it)")
        }
        var options = self
        options.endpoint = endpoint ?? store.endpoint.value
        options.region = region ?? store.region
        if credentialsDir == nil && profile == nil, let dir = mountedSecret(store) {
            options.credentialsDir = dir
        }
        return try options.makeClient(defaultAddressing: store.pathStyle ? .path : .virtualHosted,
                                      defaultCABundle: caBundle == nil ? policyCABundle(store) : nil)
    }

    /// Where deploy/ mounts the Secrets policies name: `$DRCTL_SECRETS_DIR`, else /etc/drctl/secrets.
    static var secretsDirectory: String { ProcessInfo.processInfo.environment["DRCTL_SECRETS_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/etc/drctl/secrets" }

    /// The directory where the store's credentials Secret is mounted
    /// (`$DRCTL_SECRETS_DIR/<credentials.secretName>/`), when it is there with the key files
    /// drctl reads.
    func mountedSecret(_ store: ObjectStorePolicy) -> String? {
        let dir = "\(Self.secretsDirectory)/\(store.credentials.secretName)"
        guard (store.credentials.accessKeyIdKey, store.credentials.secretAccessKeyKey) == ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY"),
              FileManager.default.isReadableFile(atPath: dir + "/ACCESS_KEY_ID") else { return nil }
        return dir
    }

    /// The CA file of a store's `caBundle` (a Secret key): `$DRCTL_SECRETS_DIR/<secret>/<key>`,
    /// `/etc/drctl/secrets/<secret>/<key>` by default, where deploy/ mounts the Secret.
    func policyCABundle(_ store: ObjectStorePolicy) throws -> String? {
        guard let ca = store.ca else { return nil }
        let dir = Self.secretsDirectory
        let path = "\(dir)/\(ca.name)/\(ca.key)"
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw ConfigError("ObjectStore \(store.name.value) (\(store.name.location)): spec.caBundle is key \(ca.key) of Secret \(ca.name), which drctl reads from \(path): not a readable file (mount the Secret at \(dir)/\(ca.name), set DRCTL_SECRETS_DIR, or pass --ca-bundle FILE)")
        }
        return path
    }
}

extension S3Options {
    /// A policy's ObjectStore through drctl's S3 client, with what `drctl wal-restore` needs to
    /// reach it from PostgreSQL's restore_command.
    func access(for store: ObjectStorePolicy) throws -> StoreAccess {
        var a = try rawAccess(for: store)
        // Velero may encrypt the storage location's objects with age.
        a.storage = veleroEncryption(a.storage)
        return a
    }

    /// The store's objects exactly as stored (what a copy copies: never decrypted on the way).
    func rawAccess(for store: ObjectStorePolicy) throws -> StoreAccess {
        Self.access(try makeClient(for: store), bucket: store.bucket.value)
    }

    static func access(_ client: S3Client, bucket: String) -> StoreAccess {
        let c = client.config.credentials
        var files = [(name: "ACCESS_KEY_ID", value: c.accessKeyID), (name: "SECRET_ACCESS_KEY", value: c.secretAccessKey)]
        if let t = c.sessionToken { files.append((name: "SESSION_TOKEN", value: t)) }
        return StoreAccess(storage: S3Storage(client: client, bucket: bucket), childArguments: client.restoreCommandArguments(), secretFiles: files)
    }

    /// `s3://bucket/prefix` through drctl's client (endpoint and keys from flags, environment or
    /// profile), or `file:///path`, a directory laid out as the bucket (a copy on a disk, an
    /// air-gapped host): the store and the key prefix the URL names.
    func open(_ location: String) throws -> (StoreAccess, String) {
        switch try StorageURL.parse(location) {
        case .s3(let bucket, let key):
            return (try decrypting(Self.access(try makeClient(), bucket: bucket), drctlRoot: DrctlLayout.beside(key).root), key)
        case .file(let root, let key):
            return (try decrypting(StoreAccess(storage: FileStorage(root: root)), drctlRoot: DrctlLayout.beside(key).root), key)
        }
    }

    /// A copy `drctl copy` encrypted, read through its age identities (and handing them to
    /// `drctl wal-restore` in the 0600 credentials directory, as the keys are); any other store as it is.
    func decrypting(_ access: StoreAccess, drctlRoot: String) throws -> StoreAccess {
        let (records, unsealed) = try DecryptedCopy.recordsFound(access.storage, drctlRoot: drctlRoot)
        let recipients = DecryptedCopy.recipients(records)
        // Records of an encrypted copy there, none drctl's (or no key to tell): whoever wrote them
        // could have encrypted anything to the copy's public recipient. Fail closed rather than
        // read it as a plain store; a plain copy is read as it is.
        if records.isEmpty && !unsealed.isEmpty {
            let why = RecordKeyring.current.cannotSign.map { " (\($0))" } ?? ""
            throw ConfigError("\(access.storage.location): its copy records (\(unsealed.joined(separator: ", "))) are not sealed with drctl's record key\(why): drctl does not read it as a copy; give DRCTL_RECORD_KEY_FILE the key the copy was made with")
        }
        guard !recipients.isEmpty else {
            // Not a copy drctl encrypted: any object may still be Velero's own age encryption.
            var out = access
            out.storage = veleroEncryption(access.storage)
            return out
        }
        guard let (identities, text) = try ageIdentities() else {
            throw ConfigError("\(access.storage.location) is a copy encrypted with age to \(recipients.joined(separator: ", ")): give the identity with --identity FILE (or DRCTL_AGE_IDENTITY_FILE)")
        }
        let have = Set(identities.map(\.recipient.description))
        if have.isDisjoint(with: recipients) {
            throw ConfigError("\(access.storage.location) is encrypted to \(recipients.joined(separator: ", ")); the identities given are for \(have.sorted().joined(separator: ", "))")
        }
        var out = access
        // Only what the sealed records list: an object they miss is not drctl's copy of anything.
        var copy = DecryptedCopy(access.storage, identities: identities, records: records)
        copy.onlyRecorded = true
        copy.ownPrefix = DrctlLayout(root: drctlRoot).root
        out.storage = copy
        out.secretFiles.append((name: "AGE_IDENTITY", value: text))
        return out
    }

    /// A store whose objects Velero may have encrypted with age, read through the identities given (if any).
    func veleroEncryption(_ storage: any StorageWriter) -> any StorageWriter {
        AgeObjects(storage, identities: (try? ageIdentities())??.0 ?? [])
    }

    /// The age identities of `--identity`, `DRCTL_AGE_IDENTITY_FILE` or the credentials
    /// directory's AGE_IDENTITY (nil: none given), and their text (for wal-restore's 0600
    /// directory); each key is registered as a secret so no message ever shows it.
    func ageIdentities() throws -> ([Age.Identity], String)? {
        var files = identityFiles
        if files.isEmpty, let f = ProcessInfo.processInfo.environment["DRCTL_AGE_IDENTITY_FILE"], !f.isEmpty { files = [f] }
        if files.isEmpty, let dir = credentialsDir ?? ProcessInfo.processInfo.environment["DRCTL_CREDENTIALS_DIR"],
           FileManager.default.fileExists(atPath: dir + "/AGE_IDENTITY") { files = [dir + "/AGE_IDENTITY"] }
        guard !files.isEmpty else { return nil }
        var identities: [Age.Identity] = [], text = ""
        for f in files {
            guard let t = try? String(contentsOfFile: f, encoding: .utf8) else { throw ConfigError("--identity \(f): not a readable file") }
            KnownSecrets.shared.add(t.split(whereSeparator: \.isNewline).map(String.init).filter { $0.hasPrefix("AGE-SECRET-KEY-") })
            do { identities += try Age.Identity.file(t) } catch { throw ConfigError("--identity \(f): \(error)") }
            text += t + "\n"
        }
        return (identities, text)
    }

    /// The policies' ObjectStores, or with `copy` (`--source`) a copy of the bucket instead: an
    /// `s3://other-bucket` on the policy's endpoint, or a `file:///path` directory. The
    /// policy's prefixes stay as they are: a copy is laid out as the bucket.
    func opener(copy: String?) throws -> StoreOpener {
        guard let copy else { return { try access(for: $0) } }
        let parsed = try StorageURL.parse(copy)
        switch parsed {
        case .s3(_, let key), .file(_, let key):
            guard key.isEmpty else {
                throw ValidationError("--source \(copy): give the copy of the whole bucket (s3://bucket or file:///path); the policy's prefixes are used below it")
            }
        }
        // One copy is one bucket's: policies on two stores cannot both be judged from it.
        let first = FirstStore()
        return { store in
            if let other = first.claim(store.name.value) {
                throw ValidationError("--source \(copy) is a copy of one bucket, and the policies use ObjectStores \(other) and \(store.name.value): name the workloads of one store")
            }
            switch parsed {
            case .s3(let bucket, _): return try decrypting(Self.access(try makeClient(for: store), bucket: bucket), drctlRoot: store.prefixes.drctl.value)
            case .file(let root, _): return try decrypting(StoreAccess(storage: FileStorage(root: root)), drctlRoot: store.prefixes.drctl.value)
            }
        }
    }
}

extension S3Options {
    /// Opens each store's copies as the policies name them (status, serve, report).
    var copyOpener: CopyOpener { { [self] in try copyTarget($0, credentialsDir: nil, endpoint: nil, url: nil) } }

    /// The store a copy goes to, reached with its own policy and its own keys, never the
    /// source's: its endpoint (or `endpoint`), region, addressing and CA from its ObjectStore, its
    /// credentials from `credentialsDir` or where deploy/ mounts its Secret
    /// (`$DRCTL_SECRETS_DIR/<credentials.secretName>/`), or `url` (file:///path, s3://bucket) instead of its bucket.
    func copyTarget(_ store: ObjectStorePolicy, credentialsDir: String?, endpoint: String?, url: String?) throws -> any StorageWriter {
        if let url, case .file(let root, let key) = try StorageURL.parse(url) {
            guard key.isEmpty else { throw ValidationError("--target \(url): give the copy's whole tree (file:///path); the policy's prefixes are used below it") }
            return FileStorage(root: root)
        }
        var bucket = store.bucket.value
        if let url, case .s3(let b, let key) = try StorageURL.parse(url) {
            guard key.isEmpty else { throw ValidationError("--target \(url): give the copy's whole bucket (s3://bucket)") }
            bucket = b
        }
        return S3Storage(client: try ownClient(store, credentialsDir: credentialsDir, endpoint: endpoint), bucket: bucket)
    }

    /// A client for ObjectStore `store` with its own keys (see `copyTarget`), never the ones of
    /// the flags or the environment, which are the source's.
    func ownClient(_ store: ObjectStorePolicy, credentialsDir: String?, endpoint: String?) throws -> S3Client {
        let dir = credentialsDir ?? "\(Self.secretsDirectory)/\(store.credentials.secretName)"
        let names = (store.credentials.accessKeyIdKey, store.credentials.secretAccessKeyKey)
        guard names == ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY") || credentialsDir != nil else {
            throw ConfigError("ObjectStore \(store.name.value): its credentials use keys \(names.0)/\(names.1); give --to-credentials-dir with files ACCESS_KEY_ID and SECRET_ACCESS_KEY")
        }
        let credentials: Credentials
        do {
            credentials = try CredentialResolver(credentialsDir: dir, environment: [:]).resolve()
        } catch {
            throw ConfigError("the keys of ObjectStore \(store.name.value) (the copy's own, never the source's): \(error) (mount Secret \(store.credentials.secretName) at \(dir), or give --to-credentials-dir)")
        }
        KnownSecrets.shared.add(credentials.secrets)
        let ep = try S3Endpoint(url: endpoint ?? store.endpoint.value, addressing: store.pathStyle ? .path : .virtualHosted)
        var config = S3Configuration(endpoint: ep, region: store.region, credentials: credentials)
        config.tls = TLSOptions(caBundle: try policyCABundle(store), insecure: insecure)
        return S3Client(config: config)
    }

    /// `--store NAME`: the policies read from ObjectStore NAME. Workloads whose store copies to
    /// NAME (spec.copies[].to) are pointed at it: its bucket, prefixes and endpoint, and its own
    /// keys (`credentialsDir`, else its mounted Secret: see `copyTarget`); an encrypted copy is
    /// read through the age identities. Workloads of NAME itself read it as usual; any other
    /// workload's store fails to open, naming its copies.
    func readingStore(_ name: String, in set: PolicySet, credentialsDir: String?, endpoint: String?) throws -> (PolicySet, StoreOpener) {
        guard let target = set.objectStore(named: name) else {
            throw ValidationError("--store \(name): no ObjectStore named '\(name)' (have: \(set.objectStores.map(\.name.value).sorted().joined(separator: ", ")))")
        }
        let sources = set.objectStores.filter { $0.copies.contains { $0.to.value == name } }.map(\.name.value)
        var out = set
        for i in out.backupPolicies.indices where sources.contains(out.backupPolicies[i].objectStore.value) {
            out.backupPolicies[i].objectStore.value = name
        }
        let asCopy = !sources.isEmpty
        let open: StoreOpener = { store in
            guard store.name.value == name else {
                let copies = store.copies.map(\.to.value)
                throw ValidationError("--store \(name): ObjectStore \(store.name.value) is not copied there (its spec.copies: \(copies.isEmpty ? "none" : copies.joined(separator: ", ")))")
            }
            guard asCopy else { return try access(for: target) }
            let client = try ownClient(target, credentialsDir: credentialsDir, endpoint: endpoint)
            return try decrypting(Self.access(client, bucket: target.bucket.value), drctlRoot: target.prefixes.drctl.value)
        }
        return (out, open)
    }
}

/// `--store NAME`: read the workloads from a copy of their store, by its policy name.
struct StoreChoice: ParsableArguments {
    @Option(help: ArgumentHelp("Read the workloads from this ObjectStore, a copy of their store (spec.copies[].to): its bucket, prefixes and own keys.", valueName: "name"))
    var store: String?
    @Option(help: ArgumentHelp("With --store: directory of that store's key files (ACCESS_KEY_ID, SECRET_ACCESS_KEY); default: $DRCTL_SECRETS_DIR (/etc/drctl/secrets)/<its credentials.secretName>.", valueName: "dir"))
    var storeCredentialsDir: String?
    @Option(help: ArgumentHelp("With --store: that store's endpoint instead of its policy's.", valueName: "url"))
    var storeEndpoint: String?

    func validate() throws {
        if store == nil && (storeCredentialsDir != nil || storeEndpoint != nil) { throw ValidationError("--store-credentials-dir and --store-endpoint go with --store") }
    }

    /// The policies and how to open their stores: from `--store`, from a copy URL (`--source`), or as they are.
    func resolve(_ set: PolicySet, _ s3: S3Options, copy: String?) throws -> (PolicySet, StoreOpener) {
        guard let store else { return (set, try s3.opener(copy: copy)) }
        guard copy == nil else { throw ValidationError("--store names a copy by its ObjectStore, --source by its URL: give one of them") }
        return try s3.readingStore(store, in: set, credentialsDir: storeCredentialsDir, endpoint: storeEndpoint)
    }
}

extension S3Client {
    /// The drctl options that reach this same store from restore_command.
    func restoreCommandArguments() -> [String] {
        var a = ["--endpoint", config.endpoint.description, "--region", config.region,
                 config.endpoint.addressing == .path ? "--path-style" : "--virtual-hosted"]
        // The client's own TLS settings (a flag's or the policy's CA), absolute for PostgreSQL's working directory.
        if let ca = config.tls.caBundle { a += ["--ca-bundle", (ca as NSString).standardizingPath.hasPrefix("/") ? ca : FileManager.default.currentDirectoryPath + "/" + ca] }
        if config.tls.insecure { a.append("--insecure") }
        return a
    }
}

/// The first ObjectStore a copy was opened for.
private final class FirstStore: @unchecked Sendable {
    private let lock = NSLock()
    private var name: String?
    /// nil when `store` is the first or the same; else the first one's name.
    func claim(_ store: String) -> String? {
        lock.withLock {
            if let name, name != store { return name }
            name = store
            return nil
        }
    }
}

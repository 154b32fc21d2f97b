import Foundation
import Layout
import Paths
import Policy
import Storage
import Support

/// Syncing the catalog: which prefixes of a store it indexes, one sync at a time per catalog
/// file, and the syncs themselves. `drctl catalog sync` and `drctl serve` run it.
public enum CatalogSync {
    /// One prefix of one store to index.
    public struct Item {
        public var storage: any StorageReader
        public var prefix: String
        public var kind: CatalogStore.PrefixKind
        public init(storage: any StorageReader, prefix: String, kind: CatalogStore.PrefixKind) {
            // A prefix is a directory: `cnpg` indexes `cnpg/…`, never `cnpg-old/…`.
            self.storage = storage
            self.prefix = prefix.isEmpty || prefix.hasSuffix("/") ? prefix : prefix + "/"
            self.kind = kind
        }
    }

    /// A policy ObjectStore's prefixes the catalog indexes: Velero's, barman's, drctl's evidence.
    public static func items(_ store: ObjectStorePolicy, storage: any StorageReader) -> [Item] {
        [Item(storage: storage, prefix: store.prefixes.velero.value, kind: .generic),
         Item(storage: storage, prefix: store.prefixes.barman.value, kind: .barman),
         Item(storage: storage, prefix: DrctlLayout(root: store.prefixes.drctl.value).evidencePrefix, kind: .generic)]
    }

    /// Runs `body` holding the catalog's exclusive lock (a file beside it). When another
    /// process holds it: returns false at once with `noWait`, else waits, telling `notice`.
    @discardableResult
    public static func withLock(_ path: String, noWait: Bool, notice: (String) -> Void = { _ in }, _ body: () throws -> Void) throws -> Bool {
        try FileManager.default.createDirectory(atPath: Paths.parent(path), withIntermediateDirectories: true)
        let fd = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LocalError("cannot open \(path).lock: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if noWait {
                notice("another catalog sync is running on \(path); not waiting")
                return false
            }
            notice("waiting for another catalog sync on \(path)")
            guard flock(fd, LOCK_EX) == 0 else { throw LocalError("cannot lock \(path).lock") }
        }
        try body()
        return true
    }

    /// Syncs each item into `catalog`, in order (the caller holds the lock).
    public static func sync(_ items: [Item], into catalog: CatalogStore, full: Bool, progress: @escaping (String) -> Void) throws -> [CatalogStore.SyncResult] {
        try items.map { item in
            try catalog.sync(store: item.storage.identity, prefix: item.prefix, kind: item.kind, forceFull: full, from: item.storage, progress: progress)
        }
    }
}

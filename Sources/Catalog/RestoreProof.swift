import Foundation
import Layout
import Storage

/// What a passing drill restored, bound to the bytes it read: the backup's `backup.info` and
/// each of its archives, by key below the barman destination (so a copy laid out under other
/// prefixes is judged the same), size, ETag as the store gave it, and SHA-256 of the bytes the
/// restore consumed; and the WAL range it replayed. Sealed with the evidence it is part of.
public struct RestoreProof: Sendable, Codable, Equatable {
    public struct Object: Sendable, Codable, Equatable {
        /// Below the barman destination: `<server>/base/<id>/data.tar`.
        public var key: String
        public var size: Int64
        public var etag: String?
        public var sha256: String
        public init(key: String, size: Int64, etag: String?, sha256: String) {
            self.key = key; self.size = size; self.etag = etag; self.sha256 = sha256
        }
    }
    public var backupID: String
    public var objects: [Object]
    public var walFirst: String?
    public var walLast: String?

    public init(backupID: String, objects: [Object], walFirst: String?, walLast: String?) {
        self.backupID = backupID; self.objects = objects; self.walFirst = walFirst; self.walLast = walLast
    }
}

/// Which backups of a barman server drills proved, judged against the objects as they are now.
/// Pure: the store's content is asked for through `contentSHA256` only when an ETag cannot
/// settle it (another store's ETag, or a store without ETags).
public enum ProofCheck {
    public struct Verdict: Sendable, Equatable {
        /// Backups a passing, authentic drill restored, every object still the one it read.
        public var proven: Set<String> = []
        /// Backups a drill restored whose objects changed since (or are gone), with why: not proven.
        public var broken: [String: String] = [:]
    }

    /// `drills`: authentic evidence only (the caller checked the seals). `objects`: the server's
    /// objects as listed now, by full key.
    public static func judge(drills: [DrillEvidence], server: String, layout: BarmanLayout, objects: [String: StoredObject],
                             contentSHA256: (String) throws -> String?) rethrows -> Verdict {
        var v = Verdict()
        var hashed: [String: String?] = [:]   // each object read at most once
        func content(_ key: String) throws -> String? {
            if let h = hashed[key] { return h }
            let h = try contentSHA256(key)
            hashed[key] = h
            return h
        }
        let proofs = drills.filter { $0.result == .passed }.flatMap { d in d.databases.filter { $0.server == server }.compactMap(\.proof) }
        for proof in proofs where !v.proven.contains(proof.backupID) {
            // A proof must cover the backup's own backup.info and at least one data archive.
            let prefix = "\(server)/base/\(proof.backupID)/"
            guard proof.objects.contains(where: { $0.key == prefix + "backup.info" }),
                  proof.objects.contains(where: { $0.key.hasPrefix(prefix + "data") }),
                  proof.objects.allSatisfy({ $0.key.hasPrefix(prefix) }) else {
                v.broken[proof.backupID] = "its drill's proof does not name the backup's backup.info and data"
                continue
            }
            var why: String?
            for o in proof.objects {
                guard let now = objects[layout.absolute(o.key)] else { why = "\(o.key) is gone"; break }
                guard now.size == o.size else { why = "\(o.key) is \(now.size) bytes, the drill read \(o.size)"; break }
                if let e = o.etag, !e.isEmpty, e == now.etag { continue }
                guard let sha = try content(layout.absolute(o.key)) else { why = "\(o.key) cannot be read"; break }
                if sha != o.sha256 { why = "\(o.key) is not the object the drill restored (SHA-256 differs)"; break }
            }
            if let why { v.broken[proof.backupID] = why } else { v.proven.insert(proof.backupID); v.broken[proof.backupID] = nil }
        }
        return v
    }
}

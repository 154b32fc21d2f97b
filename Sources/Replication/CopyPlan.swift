import Foundation
import Storage

/// One kind of object a copy takes: every key under `from` in the source goes under `to` in the
/// target, the rest of the key unchanged (so the copy is laid out as its own policy says).
public struct CopyRoute: Sendable, Equatable {
    public var from: String
    public var to: String
    /// Folders below `from` (and `to`) that are never copied nor counted: drctl's own copy records.
    public var skip: [String]

    public init(from: String, to: String, skip: [String] = []) {
        (self.from, self.to, self.skip) = (Self.folder(from), Self.folder(to), skip)
    }

    /// `cnpg` -> `cnpg/`, `` -> `` (the bucket's root).
    static func folder(_ p: String) -> String {
        let t = p.split(separator: "/").joined(separator: "/")
        return t.isEmpty ? "" : t + "/"
    }

    /// The target's key for a source key under this route, nil for one it does not take.
    public func target(of key: String) -> String? {
        guard key.hasPrefix(from) else { return nil }
        let rest = key.dropFirst(from.count)
        guard !rest.isEmpty, !skip.contains(where: { rest.hasPrefix($0) }) else { return nil }
        return to + rest
    }

    /// Whether a target key is one this route writes (not a skipped folder).
    public func owns(target key: String) -> Bool {
        guard key.hasPrefix(to) else { return false }
        let rest = key.dropFirst(to.count)
        return !rest.isEmpty && !skip.contains { rest.hasPrefix($0) }
    }
}

/// What a copy has put in its target, kept in the target (the bucket is the truth): per target
/// key, the source object it came from and the content checksum drctl computed while copying. An
/// S3 ETag is no content hash once an object went up in parts (RGW, AWS: the MD5 of the parts'
/// MD5s), so the checksum is drctl's own.
public struct CopyState: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        /// The source object's version as listed: its ETag, or size and time where a store has none.
        public var source: String
        public var size: Int64
        /// SHA-256 of the bytes copied; nil when an object already on the copy was recognised by
        /// its single-part ETag (the MD5 of its content) after an interrupted run.
        public var sha256: String?
        /// The target object's ETag as the put returned it ("" for a directory).
        public var etag: String
        public var copiedAt: Date
        /// Encrypted (age) on the copy: the object there is this large; `size` is the plaintext's.
        public var stored: Int64? = nil
        /// The age recipients it is encrypted to.
        public var recipients: [String]? = nil
        /// The source version that replaced this object at the source after it was copied (a
        /// write-once object: the copy keeps the original, the new version went beside it).
        public var changedAtSource: String? = nil
    }
    public var version = 1
    /// The source store (its identity) this state is of.
    public var source: String
    public var objects: [String: Entry] = [:]
    /// The last run that copied everything it listed, and when that listing started.
    public var lastSuccess: Date?
    public var listedAt: Date?
    /// The last run whose journal parts this record holds: parts of it and of earlier runs are
    /// not read again.
    public var compactedThrough: String?

    public init(source: String) { self.source = source }
}

/// What one copy run put since its previous checkpoint: a part of its journal, sealed on its
/// own (`<drctl>/copies/<source>.journal/<run>-<n>.json`), so a checkpoint writes what is new
/// instead of the whole record. Read on top of the record until the run's end writes the record whole.
public struct CopyJournalPart: Codable, Sendable, Equatable {
    public var run: String
    /// The source store (its identity), as the record names it.
    public var source: String
    public var objects: [String: CopyState.Entry]
}

/// What to copy: every source object whose copy is missing, differs or is not the one recorded.
public struct CopyPlan: Sendable {
    public struct Item: Sendable, Equatable {
        public var sourceKey: String
        public var targetKey: String
        public var size: Int64
        public var version: String
        public var lastModified: Date?
        /// Put the copy's current object beside it (under drctl's prefix) before overwriting it:
        /// nothing on a copy is ever lost.
        public var preserve = false
        /// The copy holds the recorded object, and the source has another version since.
        public var sourceChanged = false
    }
    public var copy: [Item]
    /// Write-once objects the source changed after they were copied: the copy keeps the
    /// original; the new version goes beside it (once), and the run fails naming each.
    public var changedAtSource: [Item] = []
    /// Write-once objects found changed at the source by an earlier run (their new version is
    /// already beside them): still different, still reported.
    public var changedBefore: [Item] = []
    /// Source objects whose recorded copy is in place.
    public var upToDate: Int
    /// Objects on the copy that the source no longer has: kept (deletions never propagate, so a
    /// wiped primary cannot wipe its copy); the copy's own retention removes them.
    public var onlyOnCopy: [String]
    /// Recognised on the copy by their single-part ETag (after a run stopped before recording them).
    public var adopted: [(String, CopyState.Entry)]

    public var bytes: Int64 { copy.reduce(0) { $0 + $1.size } }

    /// How long the oldest object not yet on the copy has waited (0 when none does).
    public func lag(now: Date) -> TimeInterval {
        copy.compactMap(\.lastModified).map { max(0, now.timeIntervalSince($0)) }.max() ?? 0
    }
}

public enum CopyPlanner {
    /// A source object's version: its ETag where the store gives one.
    public static func version(_ o: StoredObject) -> String {
        o.etag.isEmpty ? "\(o.size)@\(o.lastModified.map { String(format: "%.3f", $0.timeIntervalSince1970) } ?? "-")" : o.etag
    }

    /// A single-part S3 ETag is the MD5 of the content: equal ones (and sizes) are the same bytes.
    static func contentETag(_ etag: String) -> Bool { etag.count == 32 && etag.allSatisfy(\.isHexDigit) }

    /// Whether a key's object is rewritten by the tool that wrote it: barman-cloud writes
    /// backup.info at a backup's start and again at its end; Velero's backup finalizer uploads a
    /// backup's files (its tarball included) again when async operations end, so every file of
    /// `backups/<name>/` counts as rewritten (its old version kept beside). Everything else (base
    /// backup tars, WAL, history files, drctl's records) is written once: a change is an attack
    /// or a fault, never an update. A backup.info that already said DONE on the copy is written
    /// once again: the runner checks that (`CopyRunner.finalBackupInfos`).
    public static func rewrittenByItsTool(_ key: String) -> Bool {
        let parts = key.split(separator: "/").map(String.init)
        guard let name = parts.last else { return false }
        if name == "backup.info" { return true }
        if parts.count >= 3, parts[parts.count - 3] == "backups" {
            let backup = parts[parts.count - 2]
            return name == "velero-backup.json" || name.hasPrefix(backup)
        }
        return false
    }

    /// `recipients`: the copy is encrypted to these (an object on the copy encrypted otherwise, or
    /// not at all, is copied again); empty: plain.
    ///
    /// Nothing already on the copy is ever overwritten without being kept: an object whose
    /// source changed after drctl copied it is, if written once, left as it is (the new version
    /// goes beside it: `changedAtSource`), else copied over with its old version put beside it;
    /// an object on the copy that the record does not vouch for (damaged, or put by someone
    /// else) is put beside before the source's replaces it.
    public static func plan(routes: [CopyRoute], source: [StoredObject], target: [StoredObject], state: CopyState, now: Date,
                            recipients: [String] = []) -> CopyPlan {
        let onCopy = Dictionary(target.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        var copy: [CopyPlan.Item] = [], upToDate = 0, adopted: [(String, CopyState.Entry)] = []
        var changed: [CopyPlan.Item] = [], seenChanged: [CopyPlan.Item] = []
        var expected = Set<String>()
        for o in source {
            guard let key = routes.lazy.compactMap({ $0.target(of: o.key) }).first else { continue }
            expected.insert(key)
            let v = version(o)
            let t = onCopy[key]
            // The copy holds what the record says drctl put there.
            let recordedInPlace = state.objects[key].map { e in t.map { $0.size == (e.stored ?? e.size) && (e.etag.isEmpty || $0.etag == e.etag) } ?? false } ?? false
            if let e = state.objects[key], recordedInPlace, e.source == v, e.size == o.size, (e.recipients ?? []).sorted() == recipients.sorted() {
                upToDate += 1
                continue
            }
            let sourceChanged = state.objects[key].map { $0.source != v || $0.size != o.size } ?? false
            let item = CopyPlan.Item(sourceKey: o.key, targetKey: key, size: o.size, version: v, lastModified: o.lastModified,
                                     preserve: t != nil && (!recordedInPlace || sourceChanged), sourceChanged: recordedInPlace && sourceChanged)
            if recordedInPlace && sourceChanged, let e = state.objects[key] {
                if !rewrittenByItsTool(key) {
                    if e.changedAtSource != v { changed.append(item) } else { seenChanged.append(item) }
                    continue
                }
                copy.append(item)   // rewritten by its tool: the old version is kept beside
                continue
            }
            // Recognised by content only when plain: ciphertext differs from its source by design.
            if recipients.isEmpty, let t, t.size == o.size, contentETag(o.etag), t.etag == o.etag {
                adopted.append((key, .init(source: v, size: o.size, sha256: nil, etag: t.etag, copiedAt: now)))
                upToDate += 1
                continue
            }
            copy.append(item)
        }
        let only = target.map(\.key).filter { k in !expected.contains(k) && routes.contains { $0.owns(target: k) } }
        var plan = CopyPlan(copy: copy, upToDate: upToDate, onlyOnCopy: only.sorted(), adopted: adopted)
        plan.changedAtSource = changed
        plan.changedBefore = seenChanged
        return plan
    }
}

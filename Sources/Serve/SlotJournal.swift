import Foundation
import Layout
import Records
import Storage
import Support

/// The schedule slots of one leader-only job in the bucket (DrctlLayout.slotKey): the claim is
/// written before the job starts and its end after, so a slot runs once even when the leader
/// dies mid-job and another takes over. Only a replica holding the lease writes here; a claim is
/// written, then read back, and counts only when it is the one read. Every record is sealed with
/// drctl's record key: one that does not verify (written by anyone with the bucket's keys) is
/// absent, so a forged claim cannot suppress a drill, and planted claims cannot push real ones
/// out of adoption. What is read back never names what to delete.
public struct SlotJournal: Sendable {
    public struct Claim: Codable, Sendable, Equatable {
        public var job: String
        public var slot: Date
        public var holder: String
        public var startedAt: Date
    }
    public struct End: Codable, Sendable, Equatable {
        /// "done", "failed", or "adopted" (ended by the next leader after its holder went away).
        public var result: String
        public var by: String
        public var endedAt: Date
    }

    let storage: any StorageWriter
    let layout: DrctlLayout
    public let job: String
    public var keys: RecordKeyring = .current

    /// `job`: a name safe as one key segment (e.g. `drill-n8n-prod`).
    public init(storage: any StorageWriter, drctlPrefix: String, job: String) {
        self.storage = storage
        layout = DrctlLayout(root: drctlPrefix)
        self.job = job
    }

    /// A slot's name in keys and annotations: its UTC time in the basic form.
    public static func stamp(_ slot: Date) -> String { RFC3339.formatBasic(slot) }

    /// The claim already made for `slot` (sealed by drctl), or nil after writing ours and reading
    /// it back. Anything else at the key (unsigned, another key, undecodable) is no claim.
    public func claim(slot: Date, holder: String, now: Date) throws -> Claim? {
        let key = layout.slotKey(job: job, stamp: Self.stamp(slot))
        if let existing = try read(key, as: Claim.self, kind: RecordKind.slotClaim), existing.job == job, existing.slot == slot { return existing }
        let mine = Claim(job: job, slot: slot, holder: holder, startedAt: now)
        let sealed = try RecordSeal.seal(mine, kind: RecordKind.slotClaim, name: layout.recordName(key), keys: keys)
        // A conditional create where the store honours it: of two replicas, one creates.
        switch try storage.create(key, bytes: sealed, contentType: "application/json") {
        case true?: return nil
        case false?:
            // Something is there: a claim of drctl's (another replica won), or not (forged: replaced).
            if let theirs = try read(key, as: Claim.self, kind: RecordKind.slotClaim), theirs.job == job, theirs.slot == slot { return theirs }
            try storage.put(key, bytes: sealed, contentType: "application/json")
        case nil:
            try storage.put(key, bytes: sealed, contentType: "application/json")
        }
        // Read back: another replica's sealed claim written at the same moment wins; anything
        // else there (junk written over ours) is no claim, and the lease, checked next, decides.
        if let back = try read(key, as: Claim.self, kind: RecordKind.slotClaim), back.job == job, back.slot == slot, back.holder != holder {
            return back
        }
        return nil
    }

    public func end(slot: Date, result: String, by: String, now: Date) throws {
        let e = End(result: result, by: by, endedAt: now)
        let key = layout.slotDoneKey(job: job, stamp: Self.stamp(slot))
        try storage.put(key, bytes: try RecordSeal.seal(e, kind: RecordKind.slotEnd, name: layout.recordName(key), keys: keys), contentType: "application/json")
    }

    /// Claims without an end, newest first (at most `limit`), whose object was last written
    /// before `modifiedBefore` (the store's Last-Modified, not anything the record says): jobs a
    /// replica started and did not finish.
    public func unfinished(modifiedBefore: Date, limit: Int = 50) throws -> [Claim] {
        var claims: [String] = []
        var ends = Set<String>()
        try storage.list(prefix: layout.slotPrefix(job: job), delimiter: "/", startAfter: nil) { objects, _ in
            for o in objects {
                let name = String(o.key.dropFirst(layout.slotPrefix(job: job).count))
                if name.hasSuffix(".done.json") { ends.insert(String(name.dropLast(10))) }
                else if name.hasSuffix(".json"), let at = o.lastModified, at < modifiedBefore { claims.append(String(name.dropLast(5))) }
            }
        }
        var out: [Claim] = []
        for stamp in claims.sorted(by: >) {
            guard out.count < limit else { break }
            // An end drctl did not seal ends nothing.
            if ends.contains(stamp), try read(layout.slotDoneKey(job: job, stamp: stamp), as: End.self, kind: RecordKind.slotEnd) != nil { continue }
            // Only sealed claims count (planted ones take no place in the limit); a claim whose
            // stamp is not its own name is not one of ours.
            if let c = try read(layout.slotKey(job: job, stamp: stamp), as: Claim.self, kind: RecordKind.slotClaim), c.job == job, Self.stamp(c.slot) == stamp { out.append(c) }
        }
        return out
    }

    /// A record at `key` that drctl sealed as `kind` there, or nil.
    func read<T: Codable>(_ key: String, as: T.Type, kind: String) throws -> T? {
        var data = Data()
        do {
            try storage.get(key, range: nil) { chunk in
                guard data.count + chunk.count <= 64 << 10 else { throw Oversized() }
                data.append(contentsOf: chunk)
            }
        } catch StorageError.notFound {
            return nil
        } catch is Oversized {
            return nil   // planted: no record of drctl's is that large
        }
        let (value, how) = RecordSeal.open(Array(data), as: T.self, kind: kind, name: layout.recordName(key), keys: keys)
        return how.isAuthentic ? value : nil
    }


    /// An object at a slot key larger than any record drctl writes there.
    struct Oversized: Error {}
}

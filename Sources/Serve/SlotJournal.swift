import Foundation
import Layout
import Storage
import Support

/// The schedule slots of one leader-only job in the bucket (DrctlLayout.slotKey): the claim is
/// written before the job starts and its end after, so a slot runs once even when the leader
/// dies mid-job and another takes over. Only a replica holding the lease writes here, so a
/// read-then-write claim is enough. What is read back is bucket content: it can only make a
/// slot count as taken (a drill not run, which the drill-age alert reports) or name a slot
/// whose leftovers to look for; it never names what to delete.
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

    /// `job`: a name safe as one key segment (e.g. `drill-n8n-prod`).
    public init(storage: any StorageWriter, drctlPrefix: String, job: String) {
        self.storage = storage
        layout = DrctlLayout(root: drctlPrefix)
        self.job = job
    }

    /// A slot's name in keys and annotations: its UTC time in the basic form.
    public static func stamp(_ slot: Date) -> String { RFC3339.formatBasic(slot) }

    /// The claim already made for `slot`, or nil after writing ours.
    public func claim(slot: Date, holder: String, now: Date) throws -> Claim? {
        let key = layout.slotKey(job: job, stamp: Self.stamp(slot))
        if let existing = try read(key, as: Claim.self) { return existing }
        if try storage.head(key) != nil {
            // Something is there that does not decode: the slot counts as taken, not run twice.
            return Claim(job: job, slot: slot, holder: "(unreadable claim)", startedAt: slot)
        }
        let mine = Claim(job: job, slot: slot, holder: holder, startedAt: now)
        try storage.put(key, bytes: Array(try Self.encoder.encode(mine)), contentType: "application/json")
        return nil
    }

    public func end(slot: Date, result: String, by: String, now: Date) throws {
        let e = End(result: result, by: by, endedAt: now)
        try storage.put(layout.slotDoneKey(job: job, stamp: Self.stamp(slot)), bytes: Array(try Self.encoder.encode(e)), contentType: "application/json")
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
        for stamp in claims.sorted(by: >) where !ends.contains(stamp) {
            guard out.count < limit else { break }
            // A claim whose stamp is not its own name is not one of ours.
            if let c = try read(layout.slotKey(job: job, stamp: stamp), as: Claim.self), c.job == job, Self.stamp(c.slot) == stamp { out.append(c) }
        }
        return out
    }

    func read<T: Decodable>(_ key: String, as: T.Type) throws -> T? {
        var data = Data()
        do {
            try storage.get(key, range: nil) { chunk in
                guard data.count + chunk.count <= 64 << 10 else { throw LocalError("\(key): larger than a slot record") }
                data.append(contentsOf: chunk)
            }
        } catch StorageError.notFound {
            return nil
        }
        return try? Self.decoder.decode(T.self, from: data)
    }

    static let encoder = JSONCoding.encoder(pretty: false)
    static let decoder = JSONCoding.decoder()
}

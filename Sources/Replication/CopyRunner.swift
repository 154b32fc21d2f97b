import Age
import Foundation
import Hashing
import Layout
import Records
import Storage
import Support

/// Reading a copy without writing it: its record and what it lacks (status, metrics, --dry-run).
public enum CopyInspector {
    /// The state object on the target, or a new one. A state that is not drctl's (not sealed
    /// with its record key, undecodable, or of another source) is not trusted: everything is
    /// compared afresh, nothing is deleted.
    public static func state(source: any StorageReader, target: any StorageReader, stateKey: String, keys: RecordKeyring = .current,
                             note: (String) -> Void = { _ in }) throws -> CopyState {
        try load(source: source, target: target, stateKey: stateKey, keys: keys, note: note).state
    }

    /// `state`, and whether the record found there was drctl's (nil: there was none).
    static func load(source: any StorageReader, target: any StorageReader, stateKey: String, keys: RecordKeyring,
                     note: (String) -> Void) throws -> (state: CopyState, record: RecordAuthenticity?) {
        let fresh = CopyState(source: source.identity)
        let (found, how) = try read(target, stateKey: stateKey, keys: keys, note: note)
        guard let how else { return (fresh, nil) }
        // A record drctl did not seal vouches for nothing: every object is compared afresh,
        // and what is on the copy is kept beside before anything replaces it.
        guard let s = found, how.isAuthentic else {
            note("\(target.location)/\(stateKey) is not a copy record drctl sealed (\(how)): comparing every object afresh, keeping what is on the copy")
            return (fresh, how)
        }
        guard s.source == source.identity else {
            note("\(target.location)/\(stateKey) records a copy of \(s.source), not of \(source.identity): starting a new record")
            return (fresh, how)
        }
        return (s, how)
    }

    /// The record at `stateKey` with the journal parts written since it (their entries over
    /// its), and what the record was (nil: there was none, nor any journal). Parts drctl did not
    /// seal, or of runs the record already holds, are not read: a part put back after its run
    /// was compacted cannot bring an old entry back.
    public static func read(_ target: any StorageReader, stateKey: String, keys: RecordKeyring,
                            note: (String) -> Void = { _ in }) throws -> (CopyState?, RecordAuthenticity?) {
        var state: CopyState?
        var how: RecordAuthenticity?
        if try target.head(stateKey) != nil {
            do {
                let bytes = try target.read(stateKey, limit: 256 << 20)
                (state, how) = RecordSeal.open(bytes, as: CopyState.self, kind: RecordKind.copyRecord, name: recordName(stateKey), keys: keys)
                if !how!.isAuthentic { return (state, how) }
            } catch let e as StorageError {
                throw e
            } catch {
                note("\(target.location)/\(stateKey) is not a copy record drctl can read (\(error)): comparing every object afresh")
                return (nil, .forged)
            }
        }
        let through = state?.compactedThrough ?? ""
        var parts = 0
        // Parts are input from the bucket too: only part-sized ones are read, and after a few that
        // drctl did not seal no more (a part left unread only makes the run compare those objects
        // afresh), so planted ones cannot make every run download and parse without end.
        var forged = 0
        for o in try target.listAll(prefix: journalPrefix(stateKey)) {
            guard let run = partRun(o.key.dropFirst(journalPrefix(stateKey).count)), run > through else { continue }
            guard forged < journalForgeriesRead, o.size <= journalPartLimit, let bytes = try? target.read(o.key, limit: journalPartLimit) else {
                forged += 1
                if forged == journalForgeriesRead + 1 { note("\(target.location)/\(journalPrefix(stateKey)) holds more parts drctl did not seal, or too large to be its own: not read") }
                continue
            }
            let (part, partHow) = RecordSeal.open(bytes, as: CopyJournalPart.self, kind: RecordKind.copyJournal, name: journalName(o.key), keys: keys)
            guard let part, partHow.isAuthentic, part.run == run else {
                forged += 1
                note("\(target.location)/\(o.key) is not a journal part drctl sealed (\(partHow)): not read")
                continue
            }
            if state == nil {
                state = CopyState(source: part.source)
                how = partHow
            }
            guard part.source == state!.source else { continue }
            for (key, entry) in part.objects { state!.objects[key] = entry }
            parts += 1
        }
        if parts > 0 { note("\(parts) journal parts of an unfinished copy read on top of \(target.location)/\(stateKey)") }
        return (state, how)
    }

    /// The largest journal part read: a checkpoint of every few seconds holds far fewer entries.
    static let journalPartLimit = 16 << 20
    /// Journal parts drctl did not seal (or too large) looked at before the rest are left unread.
    static let journalForgeriesRead = 16

    /// Where a copy's journal parts go: `<drctl>/copies/<source>.journal/<run>-<n>.json`.
    public static func journalPrefix(_ stateKey: String) -> String { String(stateKey.dropLast(5)) + ".journal/" }

    /// The run a journal part's name (`<run>-<n>.json`) is of; nil for any other name.
    static func partRun(_ name: Substring) -> String? {
        guard name.hasSuffix(".json"), !name.contains("/"), let dash = name.dropLast(5).lastIndex(of: "-") else { return nil }
        return String(name[..<dash])
    }

    /// A journal part's name below drctl's prefix: what its seal is bound to.
    static func journalName(_ key: String) -> String {
        key.split(separator: "/").suffix(3).joined(separator: "/")
    }

    /// A copy record's name below drctl's prefix (`copies/<source>.json`): what its seal is bound to.
    public static func recordName(_ stateKey: String) -> String {
        stateKey.split(separator: "/").suffix(2).joined(separator: "/")
    }

    /// Where a copy keeps versions it would otherwise lose (`<drctl>/changed/<source>/`), beside its record.
    public static func historyPrefix(_ stateKey: String) -> String {
        var parts = stateKey.split(separator: "/").map(String.init)
        let source = String((parts.popLast() ?? "").dropLast(5))
        _ = parts.popLast()   // copies
        return (parts + [String(DrctlLayout.changedFolder.dropLast()), source]).joined(separator: "/") + "/"
    }

    /// The record as drctl writes it: sealed with its record key.
    public static func sealed(_ state: CopyState, stateKey: String, keys: RecordKeyring = .current) throws -> [UInt8] {
        try RecordSeal.seal(state, kind: RecordKind.copyRecord, name: recordName(stateKey), keys: keys)
    }

    /// A run's name in its journal: the time it started (to the millisecond, so names sort by
    /// it) and a random tail.
    static func runName(_ started: Date) -> String {
        let ms = Int((started.timeIntervalSince1970 * 1000).truncatingRemainder(dividingBy: 1000))
        return RFC3339.formatBasic(started) + String(format: ".%03d", ms) + "-" + UUID().uuidString.prefix(6).lowercased()
    }

    /// The whole record written, holding every journal part up to `run`'s (whose parts are then
    /// read no more), and those parts removed: drctl's own bookkeeping, all of it in the record
    /// now. A part that cannot be removed is only left behind; it is not read again.
    public static func compact(_ state: CopyState, run: String, into target: any StorageWriter, stateKey: String, keys: RecordKeyring,
                               note: (String) -> Void = { _ in }) throws {
        var state = state
        state.compactedThrough = max(run, state.compactedThrough ?? "")
        try target.put(stateKey, bytes: try sealed(state, stateKey: stateKey, keys: keys), contentType: "application/json")
        let prefix = journalPrefix(stateKey)
        let done = try target.listAll(prefix: prefix).map(\.key).filter { k in
            partRun(k.dropFirst(prefix.count)).map { $0 <= state.compactedThrough! } ?? false
        }
        if !done.isEmpty, let refused = try? target.delete(versions: done.map { StoredVersion(key: $0) }), !refused.isEmpty {
            note("\(refused.count) journal parts under \(target.location)/\(prefix) could not be removed (\(refused[0])); they are not read again")
        }
    }

    /// One journal part: what a run put since its last checkpoint.
    static func writePart(_ part: CopyJournalPart, seq: Int, into target: any StorageWriter, stateKey: String, keys: RecordKeyring) throws {
        let key = journalPrefix(stateKey) + part.run + "-" + String(format: "%06d", seq) + ".json"
        try target.put(key, bytes: try RecordSeal.seal(part, kind: RecordKind.copyJournal, name: journalName(key), keys: keys), contentType: "application/json")
    }

    /// The plan from both listings and the copy's record, with the record and the source's object count.
    public static func plan(source: any StorageReader, target: any StorageReader, stateKey: String, routes: [CopyRoute], now: Date,
                            recipients: [String] = [], keys: RecordKeyring = .current, note: (String) -> Void = { _ in }) throws -> (CopyPlan, CopyState, Int) {
        let i = try inspect(source: source, target: target, stateKey: stateKey, routes: routes, now: now, recipients: recipients, keys: keys, note: note)
        return (i.plan, i.state, i.listed)
    }

    /// What `plan` finds, and whether the copy's record was drctl's (nil: there was none).
    public struct Inspection: Sendable {
        public var plan: CopyPlan
        public var state: CopyState
        public var listed: Int
        public var record: RecordAuthenticity?
    }

    /// `plan`, with what the record found there was.
    public static func inspect(source: any StorageReader, target: any StorageReader, stateKey: String, routes: [CopyRoute], now: Date,
                               recipients: [String] = [], keys: RecordKeyring = .current, note: (String) -> Void = { _ in }) throws -> Inspection {
        let (state, record) = try load(source: source, target: target, stateKey: stateKey, keys: keys, note: note)
        // Every listing at once (both stores, every prefix): an unchanged re-run is these round trips.
        let jobs = routes.flatMap { [(true, $0.from), (false, $0.to)] }
        let listed = try Parallel.map(jobs, threads: max(1, jobs.count)) { job in
            try (job.0 ? source : target).listAll(prefix: job.1)
        }
        var sourceObjects: [StoredObject] = []
        var targetObjects: [StoredObject] = []
        for (job, objects) in zip(jobs, listed) {
            if job.0 { sourceObjects += objects } else { targetObjects += objects }
        }
        return Inspection(plan: CopyPlanner.plan(routes: routes, source: sourceObjects, target: targetObjects, state: state, now: now, recipients: recipients),
                          state: state, listed: sourceObjects.count, record: record)
    }
}

/// What one copy run did.
public struct CopyReport: Sendable, Codable {
    public struct Failure: Sendable, Codable { public var key: String; public var error: String }
    public var source: String
    public var target: String
    public var listed: Int
    public var copied: Int
    public var bytes: Int64
    public var upToDate: Int
    /// Source objects that changed while they were being copied, and were copied again.
    public var changedDuringCopy: [String]
    /// Write-once source objects that changed after they were copied: the copy kept the
    /// originals (the new versions are beside them, under drctl's prefix). A run with any fails.
    public var changedAtSource: [String] = []
    /// Objects on the copy put beside before something replaced them (old versions kept).
    public var preserved = 0
    /// With --verify: objects on the copy whose content was not what the record says.
    public var damaged: [Failure] = []
    /// Objects the copy keeps although the source no longer has them.
    public var onlyOnCopy: Int
    public var failed: [Failure]
    public var seconds: Double
    public var stateKey: String
    /// The oldest uncopied object's wait when the run listed (after a run without failures: 0).
    public var lagSeconds: Double
}

/// Copies what a plan says from one store to another: in parallel, each object whole or not at
/// all (a put is atomic; a multipart upload that fails is aborted), large ones through a file in
/// a private spool directory so memory stays bounded, each checked after its put: a source
/// object that changed meanwhile is copied again. What is on the copy is recorded in the copy's
/// state object as the run goes (every few seconds and after every large object), so a killed
/// run's successor copies only what is not recorded there and not recognisable on the copy.
/// Nothing is ever deleted on the copy.
public struct CopyRunner: Sendable {
    public var source: any StorageReader
    public let target: any StorageWriter
    public let stateKey: String
    public var workers = 8
    /// Objects up to this size are copied from memory; larger ones through the spool.
    public var inMemoryLimit: Int64 = 1 << 20
    public var spoolBase = NSTemporaryDirectory()
    public var checkpointInterval: TimeInterval = 5
    /// age recipients every object is encrypted to before it is put; empty: copied as it is.
    public var recipients: [Age.Recipient] = []
    /// `recipients` as the record holds them (sorted); nil for a plain copy.
    var recipientNames: [String]? { recipients.isEmpty ? nil : recipients.map(\.description).sorted() }
    public var progress: @Sendable (String) -> Void = { _ in }
    /// Copy nothing unless the target's bucket locks what is written to it (Object Lock with a
    /// default retention): a copy that whoever holds its keys can delete is no last line.
    public var requireObjectLock = false
    /// Failed objects in a row (each retried by the client) after which the rest are not tried.
    public var giveUpAfter = 16
    /// The record is sealed with these and only a record they verify is trusted.
    public var keys: RecordKeyring = .current
    /// Where versions the copy would otherwise lose are kept.
    var historyPrefix: String { CopyInspector.historyPrefix(stateKey) }

    public init(source: any StorageReader, target: any StorageWriter, stateKey: String) {
        self.source = source
        self.target = target
        self.stateKey = stateKey
    }

    public func loadState() throws -> CopyState {
        try CopyInspector.state(source: source, target: target, stateKey: stateKey, keys: keys, note: progress)
    }

    /// The plan from both listings and the copy's record, with the record and the source's object count.
    public func plan(routes: [CopyRoute], now: Date) throws -> (CopyPlan, CopyState, Int) {
        try CopyInspector.plan(source: source, target: target, stateKey: stateKey, routes: routes, now: now, recipients: recipients.map(\.description),
                               keys: keys, note: progress)
    }

    /// Why the target does not meet `requireObjectLock`, if it does not.
    public func objectLockShortfall() -> String? {
        guard requireObjectLock else { return nil }
        let lock: BucketLock
        do { lock = try target.bucketLock() } catch { return "its Object Lock configuration cannot be read (\(error))" }
        guard lock.enabled else { return "\(target.location) has no Object Lock (it can only be enabled when the bucket is created)" }
        guard lock.mode != nil, (lock.defaultRetentionSeconds ?? 0) > 0 else {
            return "\(target.location) has Object Lock but no default retention, so the objects drctl writes would not be locked"
        }
        return nil
    }

    public func run(routes: [CopyRoute], now: @escaping @Sendable () -> Date = Date.init) throws -> CopyReport {
        if let why = objectLockShortfall() {
            throw StorageError.io("the copy requires Object Lock (spec.copies[].objectLock: required) and \(why): nothing copied")
        }
        // What is up to date is decided on the sealed record: without a key to seal it, nothing is copied.
        if let why = keys.cannotSign { throw StorageError.io("drctl copy records what it copied in a sealed record and \(why): nothing copied") }
        let started = now()
        let (planned, recorded, listed) = try self.plan(routes: routes, now: started)
        Memory.trim()   // the listings' pages, parsed and dropped
        var state = recorded
        for (key, entry) in planned.adopted { state.objects[key] = entry }
        let plan = finalBackupInfos(planned, state: state)
        let stamp = RFC3339.formatBasic(started)
        let beside: @Sendable (String) -> String = { [historyPrefix] key in historyPrefix + key + "@" + stamp }
        let spool = try makeSpool()
        defer { try? FileManager.default.removeItem(atPath: spool) }
        let (changedFailures, sameBytes) = try keepChangedBeside(plan.changedAtSource, state: &state, beside: beside, spool: spool)
        let changedKeys = (plan.changedAtSource + plan.changedBefore).map(\.sourceKey).filter { !sameBytes.contains($0) }.sorted()
        progress("\(plan.copy.count) objects to copy (\(formatBytes(plan.bytes))), \(plan.upToDate) up to date"
                 + (plan.onlyOnCopy.isEmpty ? "" : ", \(plan.onlyOnCopy.count) only on the copy (kept)"))

        let book = Ledger(state: state)
        if !plan.changedAtSource.isEmpty || !plan.adopted.isEmpty || !sameBytes.isEmpty { book.touch() }
        let target = self.target, stateKey = self.stateKey, interval = checkpointInterval
        let me = self
        let run = CopyInspector.runName(started)
        let sourceIdentity = self.source.identity
        // Checkpoints append what is new to the journal (a part each); the record is written whole once, at the end.
        let checkpoint: @Sendable (Bool) -> Void = { force in
            guard let (entries, seq) = book.pendingIfDue(force: force, interval: interval, now: now()) else { return }
            do {
                try CopyInspector.writePart(CopyJournalPart(run: run, source: sourceIdentity, objects: entries), seq: seq, into: target, stateKey: stateKey, keys: me.keys)
            } catch {
                book.saveFailed("\(error)")
            }
        }
        let total = plan.copy.count
        let giveUp = giveUpAfter
        _ = try Parallel.map(plan.copy, threads: workers) { item -> Bool in
            if let last = book.down(after: giveUp) {
                book.skip(item.sourceKey, "not tried: the last \(giveUp) objects failed in a row, the copy's store looks down (last error: \(last))")
                return true
            }
            do {
                if item.preserve { try me.keepBeside(item.targetKey, as: beside(item.targetKey), spool: spool); book.preservedOne() }
                let (entry, changed) = try me.copyOne(item, spool: spool, now: now)
                book.record(item.targetKey, entry, changed: changed ? item.sourceKey : nil)
            } catch {
                book.fail(item.sourceKey, "\(error)")
            }
            let (done, bytes) = book.progress(item.size)
            if done % 100 == 0 || done == total { me.progress("\(done)/\(total) objects, \(formatBytes(bytes))") }
            checkpoint(item.size > me.inMemoryLimit)
            return true
        }
        if book.failures.isEmpty && changedKeys.isEmpty {
            book.finish(listedAt: started, at: now())
        }
        Memory.trim()
        if book.changedSinceLoad {
            do {
                try CopyInspector.compact(book.state, run: run, into: target, stateKey: stateKey, keys: keys, note: progress)
            } catch {
                checkpoint(true)   // what is not in a part yet, in one, so the next run still finds it
                book.saveFailed("\(error)")
            }
        }
        // An unwritten record fails the run too, but loses nothing: the next run recognises what
        // this one put by its ETag.
        var failed = (book.failures + changedFailures).sorted { $0.key < $1.key }
        if let e = book.saveError { failed.insert(.init(key: stateKey, error: "the copy's record could not be written: \(e)"), at: 0) }
        var report = CopyReport(source: source.location, target: target.location, listed: listed, copied: book.copied, bytes: book.bytes,
                                upToDate: plan.upToDate, changedDuringCopy: book.changed.sorted(), onlyOnCopy: plan.onlyOnCopy.count,
                                failed: failed, seconds: now().timeIntervalSince(started), stateKey: stateKey,
                                lagSeconds: failed.isEmpty ? 0 : plan.lag(now: started))
        report.changedAtSource = changedKeys
        report.preserved = book.preserved
        return report
    }

    /// A backup.info the copy holds as DONE is final (barman-cloud rewrites it only from
    /// STARTED): a change of it at the source is a change of something written once.
    func finalBackupInfos(_ plan: CopyPlan, state: CopyState) -> CopyPlan {
        var out = plan
        var moved = Set<String>()
        for item in plan.copy where item.sourceChanged && item.targetKey.hasSuffix("/backup.info") {
            let text = (try? target.read(item.targetKey, limit: 1 << 20)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            guard text.split(separator: "\n").contains(where: { $0.trimmingCharacters(in: .whitespaces) == "status=DONE" }) else { continue }
            moved.insert(item.targetKey)
            if state.objects[item.targetKey]?.changedAtSource == item.version { out.changedBefore.append(item) } else { out.changedAtSource.append(item) }
        }
        out.copy.removeAll { moved.contains($0.targetKey) }
        return out
    }

    /// Changed at the source after being copied: the original stays, the new version goes beside
    /// it (recorded, so it is put there once), unless its content is what was copied (the same
    /// bytes uploaded again, under another ETag). Returns what failed and what was the same bytes.
    func keepChangedBeside(_ items: [CopyPlan.Item], state: inout CopyState, beside: (String) -> String,
                           spool: String) throws -> ([CopyReport.Failure], Set<String>) {
        var failures: [CopyReport.Failure] = []
        var same = Set<String>()
        for item in items {
            let aside = beside(item.targetKey)
            let file = spool + "/" + UUID().uuidString
            defer { unlink(file) }
            do {
                let got = try source.download(item.sourceKey, to: file)
                if let recorded = state.objects[item.targetKey]?.sha256, try Self.sha256(file: file) == recorded {
                    state.objects[item.targetKey]?.source = CopyPlanner.version(got)
                    same.insert(item.sourceKey)
                    continue
                }
                _ = try putSealed(file, as: aside, lastModified: got.lastModified)
                state.objects[item.targetKey]?.changedAtSource = item.version
                progress("\(item.sourceKey) changed at the source after it was copied: the copy keeps the original; the new version is at \(aside)")
            } catch {
                failures.append(.init(key: item.sourceKey, error: "changed at the source; its new version could not be put beside the original: \(error)"))
            }
        }
        return (failures, same)
    }

    /// `drctl copy --verify`: every object the copy's sealed record lists is read back and its
    /// content checked against the record (the SHA-256 of what was copied; the content MD5 for
    /// an object recognised by its ETag), on every kind of target, a directory included (which
    /// has no ETags, so bit rot or a same-size replacement is seen only so). An encrypted object
    /// is decrypted with `identities` (without them only its size is checked). A damaged
    /// object's entry leaves the record, so the run that follows copies it again from the
    /// source, keeping the damaged one beside it. Returns the damaged keys with why.
    public func verify(routes: [CopyRoute], identities: [Age.Identity] = []) throws -> (checked: Int, damaged: [CopyReport.Failure]) {
        var state = try loadState()
        let routed = { (key: String) in routes.contains { $0.owns(target: key) } }
        let entries = state.objects.filter { routed($0.key) }.sorted { $0.key < $1.key }
        let view = DecryptedCopy(target, identities: identities, records: [state])
        let me = self
        let found = try Parallel.map(entries, threads: workers) { key, e -> CopyReport.Failure? in
            guard let head = try me.target.head(key) else { return .init(key: key, error: "recorded but missing on the copy") }
            guard head.size == (e.stored ?? e.size) else { return .init(key: key, error: "\(head.size) bytes on the copy, \(e.stored ?? e.size) recorded") }
            if e.recipients != nil && identities.isEmpty { return nil }
            let sha = SHA256Stream()
            var md5 = Digest(.md5)
            do {
                try view.get(key, range: nil) { sha.update($0); md5.update($0) }
            } catch {
                return .init(key: key, error: "cannot be read back: \(error)")
            }
            let (gotSHA, gotMD5) = (sha.finish(), md5.finish().hex)
            if let want = e.sha256 { return gotSHA == want ? nil : .init(key: key, error: "its content is not what drctl copied (SHA-256 \(gotSHA), recorded \(want))") }
            if CopyPlanner.contentETag(e.etag) { return gotMD5 == e.etag ? nil : .init(key: key, error: "its content is not what drctl copied (MD5 \(gotMD5), recorded \(e.etag))") }
            return nil
        }
        let damaged = found.compactMap { $0 }
        if !damaged.isEmpty {
            for d in damaged { state.objects[d.key] = nil }
            try CopyInspector.compact(state, run: CopyInspector.runName(Date()), into: target, stateKey: stateKey, keys: keys, note: progress)
        }
        return (entries.count, damaged)
    }

    /// `drctl copy --reencrypt`: every object the copy's record lists as encrypted to other
    /// recipients than `recipients` (or, with none, encrypted at all) is rewritten for them, read
    /// from the copy itself through `identities`, so what the source no longer has is re-encrypted
    /// too. The record keeps each object's source version, so a normal copy still sees it in
    /// place; a plaintext that no longer matches its recorded SHA-256 is refused by name.
    public func reencrypt(routes: [CopyRoute], identities: [Age.Identity], now: @escaping @Sendable () -> Date = Date.init) throws -> CopyReport {
        let started = now()
        let state = try loadState()
        let want = recipientNames
        // The record is input from the copy's bucket: only keys this copy's routes write (never a
        // record), and only objects still the ones recorded (their ETag), are rewritten.
        let onCopy = Dictionary(try routes.flatMap { try target.listAll(prefix: $0.to) }.map { ($0.key, $0.etag) }, uniquingKeysWith: { a, _ in a })
        func routed(_ key: String) -> Bool {
            routes.contains { r in key.hasPrefix(r.to) && !r.skip.contains { key.dropFirst(r.to.count).hasPrefix($0) } }
        }
        var stale: [(key: String, value: CopyState.Entry)] = []
        var refused: [CopyReport.Failure] = []
        for (key, entry) in state.objects.sorted(by: { $0.key < $1.key })
        where entry.recipients != want && (entry.recipients != nil || want != nil) {
            guard routed(key), key != stateKey else {
                refused.append(.init(key: key, error: "not an object this copy writes: its record entry is ignored, nothing rewritten"))
                continue
            }
            guard let etag = onCopy[key], etag == entry.etag || entry.etag.isEmpty else {
                refused.append(.init(key: key, error: "not the object drctl copied (ETag \(onCopy[key] ?? "missing"), recorded \(entry.etag)): not re-encrypted; the next drctl copy replaces it from the source"))
                continue
            }
            stale.append((key, entry))
        }
        progress("\(stale.count) of \(state.objects.count) objects on the copy to re-encrypt" + (want.map { " for \($0.joined(separator: ", "))" } ?? " as plain objects"))
        var reader = self
        reader.source = DecryptedCopy(target, identities: identities, records: [state])
        let spool = try makeSpool()
        defer { try? FileManager.default.removeItem(atPath: spool) }
        let book = Ledger(state: state)
        let me = reader
        _ = try Parallel.map(stale, threads: workers) { key, old -> Bool in
            do {
                book.record(key, try me.rewrite(key, old, spool: spool), changed: nil)
            } catch {
                book.fail(key, "\(error)")
            }
            return true
        }
        if book.changedSinceLoad {
            try CopyInspector.compact(book.state, run: CopyInspector.runName(started), into: target, stateKey: stateKey, keys: keys, note: progress)
        }
        return CopyReport(source: target.location, target: target.location, listed: state.objects.count, copied: book.copied, bytes: book.bytes,
                          upToDate: state.objects.count - stale.count - refused.count, changedDuringCopy: [], onlyOnCopy: 0,
                          failed: (book.failures + refused).sorted { $0.key < $1.key }, seconds: now().timeIntervalSince(started), stateKey: stateKey, lagSeconds: 0)
    }

    /// One object of the copy, read back (decrypted) through `source`, checked against its
    /// record, and put again for `recipients`. Anyone can encrypt to a public recipient, so an
    /// object whose plaintext is not the recorded one is left alone and named, not re-sealed.
    func rewrite(_ key: String, _ old: CopyState.Entry, spool: String) throws -> CopyState.Entry {
        let file = spool + "/" + UUID().uuidString
        defer { unlink(file) }
        let got = try source.download(key, to: file)
        let sha = try Self.sha256(file: file)
        if let recorded = old.sha256, recorded != sha {
            throw StorageError.io("\(key): its plaintext is not the one drctl copied (SHA-256 \(sha), recorded \(recorded)): not re-encrypted; the next drctl copy replaces it from the source")
        }
        let put = try putSealed(file, as: key, lastModified: nil)
        return .init(source: old.source, size: got.size, sha256: sha, etag: put.etag, copiedAt: old.copiedAt,
                     stored: recipientNames == nil ? nil : put.size, recipients: recipientNames)
    }

    /// `file` put at `key`, encrypted to `recipients` on the way when there are any (through a
    /// second spool file), and checked to be stored whole.
    func putSealed(_ file: String, as key: String, lastModified: Date?) throws -> StoredObject {
        var upload = file
        if !recipients.isEmpty {
            upload = file + ".age"
            try Self.encrypt(file, into: upload, to: recipients)
        }
        defer { if upload != file { unlink(upload) } }
        let put = try target.put(key, file: upload, lastModified: lastModified)
        let sent = Int64(try FileManager.default.attributesOfItem(atPath: upload)[.size] as? Int ?? -1)
        guard put.size == sent else { throw StorageError.io("\(target.location)/\(key): stored \(put.size) bytes, sent \(sent)") }
        return put
    }

    /// One object, whole: one read of the source (whose answer says which version it read) and
    /// one put. An object that changed after the listing is copied as it was read, and named
    /// (`changedDuringCopy`); one that changes after the read is found by the next run's listing.
    func copyOne(_ item: CopyPlan.Item, spool: String, now: () -> Date) throws -> (CopyState.Entry, Bool) {
        let entry = try transfer(item, spool: spool, now: now)
        if entry.source != item.version { progress("\(item.sourceKey) changed since it was listed: the copy holds it as it is now") }
        return (entry, entry.source != item.version)
    }

    func transfer(_ item: CopyPlan.Item, spool: String, now: () -> Date) throws -> CopyState.Entry {
        let names = recipientNames
        if item.size <= inMemoryLimit {
            // A listing's size is a claim: a larger object read now is refused past the limit and copied through the spool.
            var fetched: (bytes: [UInt8], object: StoredObject)?
            do { fetched = try source.fetch(item.sourceKey, limit: Int(inMemoryLimit)) } catch is ObjectTooLarge {}
            if let (bytes, got) = fetched {
                let body = recipients.isEmpty ? bytes : try Age.encrypt(bytes, to: recipients)
                let put = try target.put(item.targetKey, bytes: body, contentType: nil)
                guard put.size == Int64(body.count) else { throw StorageError.io("\(target.location)/\(item.targetKey): stored \(put.size) bytes, sent \(body.count)") }
                return .init(source: CopyPlanner.version(got), size: Int64(bytes.count), sha256: Hash.sha256(bytes).hex, etag: put.etag, copiedAt: now(),
                             stored: names == nil ? nil : put.size, recipients: names)
            }
        }
        let file = spool + "/" + UUID().uuidString
        defer { unlink(file) }
        let got = try source.download(item.sourceKey, to: file)
        let sha = try Self.sha256(file: file)
        let put = try putSealed(file, as: item.targetKey, lastModified: got.lastModified ?? item.lastModified)
        return .init(source: CopyPlanner.version(got), size: got.size, sha256: sha, etag: put.etag, copiedAt: now(),
                     stored: names == nil ? nil : put.size, recipients: names)
    }

    /// The copy's object at `key` put at `aside` (read back and written again: a store-side copy
    /// is not in the Storage interface), so what replaces it loses nothing.
    func keepBeside(_ key: String, as aside: String, spool: String) throws {
        let file = spool + "/" + UUID().uuidString
        defer { unlink(file) }
        let got = try target.download(key, to: file)
        _ = try target.put(aside, file: file, lastModified: got.lastModified)
    }

    /// `file` encrypted (age) into a new file, in 1 MiB reads.
    static func encrypt(_ file: String, into out: String, to recipients: [Age.Recipient]) throws {
        let src = open(file, O_RDONLY | O_CLOEXEC)
        guard src >= 0 else { throw StorageError.io("\(file): \(String(cString: strerror(errno)))") }
        defer { close(src) }
        let dst = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard dst >= 0 else { throw StorageError.io("\(out): \(String(cString: strerror(errno)))") }
        defer { close(dst) }
        let e = try Age.Encryptor(recipients: recipients)
        try e.header.withUnsafeBytes { try writeAll(dst, $0, path: out) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(src, $0.baseAddress!, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw StorageError.io("\(file): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            let sealed = buffer.withUnsafeBytes { e.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            try sealed.withUnsafeBytes { try writeAll(dst, $0, path: out) }
        }
        try e.finish().withUnsafeBytes { try writeAll(dst, $0, path: out) }
        guard fsync(dst) == 0 else { throw StorageError.io("\(out): \(String(cString: strerror(errno)))") }
    }

    static func sha256(file: String) throws -> String {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StorageError.io("\(file): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var d = Digest(.sha256)
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw StorageError.io("\(file): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            buffer.withUnsafeBytes { d.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return d.finish().hex
    }

    func makeSpool() throws -> String {
        let dir = (spoolBase as NSString).appendingPathComponent("drctl-copy-\(UUID().uuidString.prefix(8))")
        guard mkdir(dir, 0o700) == 0 else { throw StorageError.io("cannot create \(dir): \(String(cString: strerror(errno)))") }
        return dir
    }
}

/// The run's shared record: entries, counts, failures; what is new since the last checkpoint.
private final class Ledger: @unchecked Sendable {
    private let lock = NSLock()
    private var whole: CopyState
    private var pending: [String: CopyState.Entry] = [:]
    private var parts = 0
    private var lastSave = Date.distantPast
    private var touched = false
    private(set) var copied = 0
    private(set) var bytes: Int64 = 0
    private var done = 0
    private var doneBytes: Int64 = 0
    private(set) var changed: [String] = []
    private(set) var failures: [CopyReport.Failure] = []
    private(set) var saveError: String?
    private(set) var preserved = 0
    func preservedOne() { lock.withLock { preserved += 1 } }
    /// The record changed before any object was copied (adopted objects, versions kept beside).
    func touch() { lock.withLock { touched = true } }
    var state: CopyState { lock.withLock { whole } }
    /// Whether the record differs from what was loaded: only then is it written.
    var changedSinceLoad: Bool { lock.withLock { touched } }

    init(state: CopyState) { self.whole = state }

    func record(_ key: String, _ e: CopyState.Entry, changed c: String?) {
        lock.withLock {
            whole.objects[key] = e
            pending[key] = e
            inARow = 0
            copied += 1
            bytes += e.size
            touched = true
            if let c { changed.append(c) }
        }
    }
    func fail(_ key: String, _ error: String) { lock.withLock { failures.append(.init(key: key, error: error)); inARow += 1; lastError = error } }
    private var inARow = 0
    private var lastError = ""
    /// After `limit` failures in a row (each already retried by the client): the store is down,
    /// and trying every remaining object would only take hours to say so.
    func down(after limit: Int) -> String? { lock.withLock { inARow >= limit ? lastError : nil } }
    func progress(_ size: Int64) -> (Int, Int64) { lock.withLock { done += 1; doneBytes += size; return (done, doneBytes) } }
    func finish(listedAt: Date, at: Date) { lock.withLock { whole.lastSuccess = at; whole.listedAt = listedAt; touched = true } }
    func saveFailed(_ e: String) { lock.withLock { saveError = e } }
    func skip(_ key: String, _ why: String) { lock.withLock { failures.append(.init(key: key, error: why)) } }
    /// The entries for the next journal part and its number, or nil when nothing is new or the
    /// last part was too recent.
    func pendingIfDue(force: Bool, interval: TimeInterval, now: Date) -> ([String: CopyState.Entry], Int)? {
        lock.withLock {
            guard !pending.isEmpty, force || now.timeIntervalSince(lastSave) >= interval else { return nil }
            defer { pending = [:]; parts += 1 }
            lastSave = now
            return (pending, parts)
        }
    }
}

import Foundation
import Support

extension S3Client {
    /// Lists every key under `prefix` like `listObjects`, but fans out: the level below
    /// `prefix` is listed with delimiter `/`, and each common prefix found there is listed in
    /// full on its own, up to `parallelism` at once. A serial listing waits for the server once
    /// per 1,000 keys; disjoint prefixes can be listed side by side. Pages still arrive in key
    /// order, and at most `2 × parallelism` prefixes are held in memory.
    public func listObjectsParallel(bucket: String, prefix: String = "", parallelism: Int = 4,
                                    page: (ListPage) throws -> Void) throws {
        // The levels below `prefix`, in key order: objects and sub-prefixes. A level with too few
        // sub-prefixes to share out (a single server folder, base/ and wals/) is opened
        // further, up to a few levels, so the listing fans out where the keys actually are.
        enum Segment { case objects([ObjectInfo]), prefix(String) }
        func level(_ p: String) throws -> [Segment] {
            var segments: [Segment] = []
            try listObjects(bucket: bucket, prefix: p, delimiter: "/") { page in
                var objects = page.objects[...]
                for cp in page.commonPrefixes {
                    let before = objects.prefix { Array($0.key.utf8).lexicographicallyPrecedes(Array(cp.utf8)) }
                    if !before.isEmpty { segments.append(.objects(Array(before))) }
                    objects = objects.dropFirst(before.count)
                    segments.append(.prefix(cp))
                }
                if !objects.isEmpty { segments.append(.objects(Array(objects))) }
            }
            return segments
        }
        func expand(_ p: String, depth: Int) throws -> [Segment] {
            let segments = try level(p)
            let subprefixes = segments.filter { if case .prefix = $0 { return true } else { return false } }.count
            guard subprefixes > 0, subprefixes < max(2, parallelism * 2), depth < 4 else { return segments }
            return try segments.flatMap { s -> [Segment] in
                if case .prefix(let sub) = s { return try expand(sub, depth: depth + 1) }
                return [s]
            }
        }
        let segments = try expand(prefix, depth: 0)
        // Consecutive sub-prefixes are listed as a few key ranges rather than one by one:
        // a range is read in full 1,000-key pages, while small directories (barman's 256-segment
        // WAL directories) would each cost a request of their own.
        enum Unit { case objects([ObjectInfo]), range([String]) }
        var units: [Unit] = []
        var run: [String] = []
        func flush() {
            guard !run.isEmpty else { return }
            let groups = max(1, min(run.count, max(1, parallelism) * 2))
            let size = (run.count + groups - 1) / groups
            var i = 0
            while i < run.count {
                units.append(.range(Array(run[i..<min(i + size, run.count)])))
                i += size
            }
            run = []
        }
        for s in segments {
            switch s {
            case .prefix(let p): run.append(p)
            case .objects(let o): flush(); units.append(.objects(o))
            }
        }
        flush()
        let ranges = units.compactMap { if case .range(let r) = $0 { return r } else { return nil } }
        guard !ranges.isEmpty else {
            for case .objects(let o) in units { try page(ListPage(objects: o, commonPrefixes: [], isTruncated: false)) }
            return
        }

        let work = PrefixWork(count: ranges.count, window: max(1, parallelism) * 2)
        let group = DispatchGroup()
        for _ in 0..<min(max(1, parallelism), ranges.count) {
            DispatchQueue.global().async(group: group) {
                while let i = work.claim() {
                    do {
                        work.finish(i, .success(try self.listRange(bucket: bucket, prefixes: ranges[i])))
                    } catch {
                        work.finish(i, .failure(error))
                    }
                }
            }
        }
        defer { work.cancel(); group.wait() }
        var next = 0
        for unit in units {
            switch unit {
            case .objects(let o):
                try page(ListPage(objects: o, commonPrefixes: [], isTruncated: false))
            case .range:
                let objects = try work.take(next).get()
                next += 1
                if !objects.isEmpty { try page(ListPage(objects: objects, commonPrefixes: [], isTruncated: false)) }
            }
        }
    }

    /// Every key under a run of consecutive sibling prefixes (`a/x/`, `a/y/`, …), read as one key
    /// range of their parent: from just before the first to past the last.
    func listRange(bucket: String, prefixes: [String]) throws -> [ObjectInfo] {
        guard let first = prefixes.first, let last = prefixes.last else { return [] }
        if prefixes.count == 1 {
            var all: [ObjectInfo] = []
            try listObjects(bucket: bucket, prefix: first) { all += $0.objects }
            return all
        }
        // The parent shared by the siblings, e.g. `cnpg/db/wals/` for `cnpg/db/wals/0000000100000000/`.
        let parent = String(first.dropLast().prefix { _ in true }.reversed().drop { $0 != "/" }.reversed())
        let members = Set(prefixes)
        func member(_ key: String) -> Bool {
            guard let slash = key.dropFirst(parent.count).firstIndex(of: "/") else { return false }
            return members.contains(String(key[...slash]))
        }
        var out: [ObjectInfo] = []
        var token: String?
        // `first` without its slash sorts before every key under it; anything in between that is
        // not under one of the prefixes (a sibling object like `x.history`) is filtered out.
        let startAfter = String(first.dropLast())
        let lastBytes = Array(last.utf8)
        pages: repeat {
            let p = try listObjectsPage(bucket: bucket, prefix: parent, startAfter: token == nil ? startAfter : nil, continuationToken: token)
            for o in p.objects {
                // Past the last prefix, in S3's order (UTF-8 bytes): the range is done.
                if !o.key.hasPrefix(last) && lastBytes.lexicographicallyPrecedes(Array(o.key.utf8)) { break pages }
                if member(o.key) { out.append(o) }
            }
            token = p.isTruncated ? p.nextContinuationToken : nil
        } while token != nil
        return out
    }
}

/// Hands out prefix indexes to listing workers and gives their results back in order.
private final class PrefixWork: @unchecked Sendable {
    private let cond = NSCondition()
    private var results: [Int: Result<[ObjectInfo], Error>] = [:]
    private var nextClaim = 0
    private var delivered = 0
    private var cancelled = false
    private var firstError: Error?
    let count: Int
    let window: Int

    init(count: Int, window: Int) {
        self.count = count
        self.window = window
    }

    /// The next prefix to list, waiting while the window of undelivered results is full.
    func claim() -> Int? {
        cond.lock(); defer { cond.unlock() }
        while !cancelled && nextClaim < count && nextClaim >= delivered + window { cond.wait() }
        guard !cancelled, nextClaim < count else { return nil }
        defer { nextClaim += 1 }
        return nextClaim
    }

    func finish(_ i: Int, _ r: Result<[ObjectInfo], Error>) {
        cond.lock()
        results[i] = r
        if case .failure(let e) = r, firstError == nil {
            firstError = e
            cancelled = true
        }
        cond.broadcast()
        cond.unlock()
    }

    func take(_ i: Int) -> Result<[ObjectInfo], Error> {
        cond.lock(); defer { cond.unlock() }
        while results[i] == nil {
            // A prefix nobody will list any more, because another one failed.
            if let e = firstError, i >= nextClaim { return .failure(e) }
            cond.wait()
        }
        let r = results.removeValue(forKey: i)!
        delivered = i + 1
        cond.broadcast()
        return r
    }

    func cancel() {
        cond.lock()
        cancelled = true
        cond.broadcast()
        cond.unlock()
    }
}

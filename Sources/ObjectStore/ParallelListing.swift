import Foundation

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
        let prefixes = segments.compactMap { if case .prefix(let p) = $0 { return p } else { return nil } }
        guard !prefixes.isEmpty else {
            for case .objects(let o) in segments { try page(ListPage(objects: o, commonPrefixes: [], isTruncated: false)) }
            return
        }

        let work = PrefixWork(count: prefixes.count, window: max(1, parallelism) * 2)
        let group = DispatchGroup()
        for _ in 0..<min(max(1, parallelism), prefixes.count) {
            DispatchQueue.global().async(group: group) {
                while let i = work.claim() {
                    do {
                        var objects: [ObjectInfo] = []
                        try self.listObjects(bucket: bucket, prefix: prefixes[i]) { objects += $0.objects }
                        work.finish(i, .success(objects))
                    } catch {
                        work.finish(i, .failure(error))
                    }
                }
            }
        }
        defer { work.cancel(); group.wait() }
        var next = 0
        for segment in segments {
            switch segment {
            case .objects(let o):
                try page(ListPage(objects: o, commonPrefixes: [], isTruncated: false))
            case .prefix:
                let objects = try work.take(next).get()
                next += 1
                if !objects.isEmpty { try page(ListPage(objects: objects, commonPrefixes: [], isTruncated: false)) }
            }
        }
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

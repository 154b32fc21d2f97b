import Foundation

/// Runs blocking network calls side by side on threads of their own: Dispatch's global queue
/// runs only as many blocking jobs as there are cores, and these wait on the network (RGW's beast
/// answers a small request on a kept-alive connection in about 40 ms: Nagle against delayed
/// ACKs), not on the CPU.
public enum Parallel {
    /// `body` of every item, in order, on at most `threads` threads; the first error stops the
    /// rest and is thrown.
    public static func map<T: Sendable, R: Sendable>(_ items: [T], threads: Int, _ body: @escaping @Sendable (T) throws -> R) throws -> [R] {
        let results = ParallelResults<R>(items.count)
        let done = DispatchSemaphore(value: 0)
        let n = min(max(threads, 1), items.count)
        for _ in 0..<n {
            Thread.detachNewThread {
                while let i = results.claim() {
                    do {
                        let v = try body(items[i])
                        results.lock.withLock { results.values[i] = v }
                    } catch {
                        results.lock.withLock { if results.error == nil { results.error = error } }
                    }
                }
                done.signal()
            }
        }
        for _ in 0..<n { done.wait() }
        if let e = results.error { throw e }
        return results.values.map { $0! }
    }
}

private final class ParallelResults<R>: @unchecked Sendable {
    let lock = NSLock()
    var values: [R?]
    var next = 0
    var error: (any Error)?
    init(_ n: Int) { values = Array(repeating: nil, count: n) }
    func claim() -> Int? { lock.withLock { error == nil && next < values.count ? { next += 1; return next - 1 }() : nil } }
}

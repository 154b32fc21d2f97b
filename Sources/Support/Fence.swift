import Foundation

/// Closed when this process must stop changing anything outside itself (a `drctl serve`
/// leader that lost its lease: another replica may act from then on). The object store drivers
/// refuse writes and deletions, and the Kubernetes client refuses creates and updates, once it is
/// closed; deletions of drctl's own scratch namespaces (the cleanup) still go.
public final class Fence: @unchecked Sendable {
    public static let process = Fence()
    private let lock = NSLock()
    private var reason: String?

    public init() {}

    public func close(_ why: String) { lock.withLock { if reason == nil { reason = why } } }

    public var closedBecause: String? { lock.withLock { reason } }

    /// Throws when closed, naming what was refused.
    public func check(_ what: String) throws {
        if let r = closedBecause { throw LocalError("\(what) refused: \(r)") }
    }
}

import Foundation
import Hashing
import Support

/// Who may see drctl serve's pages: a bearer token, checked by whoever can say whose it is
/// (`authenticate`, the API server's TokenReview) and what that user may do (`authorize`, its
/// SubjectAccessReview). Answers are kept `ttl` seconds under the token's SHA-256, never the
/// token itself, so a page load does not cost two API requests per asset; an answer that could
/// not be had (the API server down) is not kept.
public final class AccessGate<User: Sendable>: @unchecked Sendable {
    let authenticate: @Sendable (String) throws -> User?
    /// nil: allowed; else why not (named in the 403).
    let authorize: @Sendable (User) throws -> String?
    let log: @Sendable (String) -> Void
    let ttl: TimeInterval
    let clock: @Sendable () -> Date
    let capacity: Int
    private let lock = NSLock()
    private var cache: [String: (WebServer.Access, Date)] = [:]

    public init(ttl: TimeInterval = 60, capacity: Int = 10_000, clock: @escaping @Sendable () -> Date = Date.init,
                authenticate: @escaping @Sendable (String) throws -> User?, authorize: @escaping @Sendable (User) throws -> String?,
                log: @escaping @Sendable (String) -> Void) {
        self.ttl = ttl
        self.capacity = capacity
        self.clock = clock
        self.authenticate = authenticate
        self.authorize = authorize
        self.log = log
    }

    /// The answer for an Authorization header (nil: none sent).
    public func check(_ header: String?) -> WebServer.Access {
        guard let header, header.hasPrefix("Bearer "), case let token = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces), !token.isEmpty else {
            return .unauthenticated
        }
        let key = Hash.sha256(Array(token.utf8)).map { String(format: "%02x", $0) }.joined()
        let now = clock()
        if let (answer, at) = lock.withLock({ cache[key] }), now.timeIntervalSince(at) < ttl { return answer }
        let answer: WebServer.Access
        do {
            if let user = try authenticate(token) {
                answer = try authorize(user).map { .forbidden($0) } ?? .allowed
            } else {
                answer = .unauthenticated
            }
        } catch {
            let why = "\(error)"
            log("access check failed: \(why)")
            return .unavailable(why)
        }
        lock.withLock {
            // Expired answers go first; a flood of new tokens cannot grow the cache past its capacity.
            if cache.count >= capacity { cache = cache.filter { now.timeIntervalSince($0.value.1) < ttl } }
            if cache.count >= capacity { cache.removeAll() }
            cache[key] = (answer, now)
        }
        return answer
    }
}

import Foundation
import Testing
@testable import Serve

/// The gate in front of drctl serve's pages, with a fake API server: who is refused how, what
/// is cached (by the token's hash, for its time), and that an API server that cannot answer is
/// asked again next time.
@Suite struct AccessGateTests {
    final class FakeAPI: @unchecked Sendable {
        let lock = NSLock()
        var calls = 0
        var down = false
        var now = Date(timeIntervalSince1970: 1_800_000_000)
        func authenticate(_ token: String) throws -> String? {
            struct Down: Error {}
            try lock.withLock {
                calls += 1
                if down { throw Down() }
            }
            return ["viewer-token": "viewer", "stranger-token": "stranger"][token]
        }
    }

    func gate(_ api: FakeAPI) -> AccessGate<String> {
        AccessGate(ttl: 60, capacity: 3, clock: { api.lock.withLock { api.now } }, authenticate: { try api.authenticate($0) },
                   authorize: { $0 == "viewer" ? nil : "\($0) may not get drctl.dev/status" }, log: { _ in })
    }

    @Test func tokensAreCheckedAndAnswersKeptForTheirTime() {
        let api = FakeAPI(), g = gate(api)
        #expect(g.check(nil) == .unauthenticated)
        #expect(g.check("Basic dXNlcjpwdw==") == .unauthenticated)
        #expect(g.check("Bearer ") == .unauthenticated)
        #expect(api.calls == 0, "no token: the API server is not asked")
        #expect(g.check("Bearer viewer-token") == .allowed)
        #expect(g.check("Bearer stranger-token") == .forbidden("stranger may not get drctl.dev/status"))
        #expect(g.check("Bearer unknown") == .unauthenticated)
        #expect(api.calls == 3)
        #expect(g.check("Bearer viewer-token") == .allowed)
        #expect(api.calls == 3, "kept")
        api.lock.withLock { api.now += 61 }
        #expect(g.check("Bearer viewer-token") == .allowed)
        #expect(api.calls == 4, "asked again after the ttl")
    }

    @Test func anAPIServerThatCannotAnswerIsNotCachedAndTheCacheIsBounded() {
        let api = FakeAPI(), g = gate(api)
        api.down = true
        if case .unavailable = g.check("Bearer viewer-token") {} else { Issue.record("unavailable expected") }
        api.down = false
        #expect(g.check("Bearer viewer-token") == .allowed, "the failure was not kept")
        for i in 0..<10 { _ = g.check("Bearer random-\(i)") }
        let before = api.calls
        _ = g.check("Bearer random-9")
        #expect(api.calls == before, "the newest answer survives a flood")
    }
}

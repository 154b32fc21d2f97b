import Foundation
import Testing
import Support
import TestSupport

/// The tests' own child processes: none outlives its deadline, and none keeps a pipe of the
/// test process open (a helper waiting on that pipe's EOF would wait forever).
struct ChildProcessTests {
    @Test func aWaitEndsAtItsDeadlineNamingWhatItWaitedFor() throws {
        let pid = try spawn("/bin/sleep", ["30"])
        let started = Date()
        do {
            _ = try reap(pid, within: 1)
            Issue.record("the wait returned while sleep 30 ran")
        } catch let e as FixtureError {
            #expect(e.description.contains("still running after 1 s") && e.description.contains("/bin/sleep 30"), "\(e)")
        }
        #expect(Date().timeIntervalSince(started) < 10)
        #expect(kill(pid, 0) != 0, "killed and reaped")
    }

    @Test func aDaemonStartedWhileAPipeIsOpenDoesNotHoldIt() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)   // inheritable, as Foundation's Pipe() makes them
        defer { close(fds[0]) }
        let daemon = try spawn("/bin/sleep", ["20"], newGroup: true)
        defer { stop(daemon) }
        close(fds[1])
        // With the write end held by the daemon this would block until it exits.
        var p = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 5_000) == 1, "the pipe reached EOF at once")
        var byte: UInt8 = 0
        #expect(read(fds[0], &byte, 1) == 0)
    }

    @Test func aHelperIsStoppedBySignalEvenFromAThreadThatBlocksIt() throws {
        // A thread that blocks SIGTERM (as test runners' do) starts the helper: it must not inherit that.
        let started = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var pid: pid_t = 0
        let t = Thread {
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGTERM)
            pthread_sigmask(SIG_BLOCK, &set, nil)
            pid = (try? spawn("/bin/sleep", ["30"])) ?? 0
            started.signal()
        }
        t.start()
        try #require(started.wait(timeout: .now() + 10) == .success && pid > 0)
        let asked = Date()
        stop(pid, grace: 20)
        #expect(Date().timeIntervalSince(asked) < 5, "stopped by SIGTERM, not by the SIGKILL after the grace")
    }
}

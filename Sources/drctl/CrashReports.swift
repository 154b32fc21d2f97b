import Foundation
import Support

/// Swift's crash reporter prints every register and the 16 bytes of memory each points at, which
/// in drctl can be a piece of an S3 key, a token or a password. It reads its settings when the
/// process starts, so drctl, when nothing chose them, re-executes itself once with the register
/// dump off: a crash report keeps its backtrace, without memory.
enum CrashReports {
    static let settings = "enable=yes,registers=none,images=none"

    static func makeSafe() {
        #if os(Linux)
        guard getenv("SWIFT_BACKTRACE") == nil else { return }
        setenv("SWIFT_BACKTRACE", settings, 1)
        // The binary's own path (not /proc/self/exe), so the process is still named drctl.
        guard let path = ProcFS.executablePath() else { return }
        execv(path, CommandLine.unsafeArgv)
        // Not re-executed (no /proc): carry on; the setting is inherited by what drctl starts.
        #endif
    }
}

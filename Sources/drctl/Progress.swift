import Foundation
import Support
import ObjectStore

/// Progress of a transfer on standard error: a redrawn bar on a terminal, a plain line every
/// few seconds otherwise (CronJob logs), nothing with --quiet.
final class ProgressPrinter: @unchecked Sendable {
    let label: String
    let enabled: Bool
    let tty = isatty(STDERR_FILENO) == 1
    private let lock = NSLock()
    private var last = Date.distantPast
    private let started = Date()

    init(label: String, enabled: Bool) {
        self.label = label
        self.enabled = enabled
    }

    var callback: TransferProgress? {
        guard enabled else { return nil }
        return { [self] done, total in update(done, total) }
    }

    func update(_ done: Int64, _ total: Int64?) {
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        let interval = tty ? 0.2 : 5
        guard now.timeIntervalSince(last) >= interval || done == total else { return }
        last = now
        let elapsed = max(now.timeIntervalSince(started), 0.001)
        let rate = "\(formatBytes(Int64(Double(done) / elapsed)))/s"
        var line = "\(label): \(formatBytes(done))"
        if let total, total > 0 {
            let pct = Int(Double(done) * 100 / Double(total))
            if tty {
                let width = 24, filled = width * pct / 100
                line = "\(label) [\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(pct)% \(formatBytes(done))/\(formatBytes(total))"
            } else {
                line += " of \(formatBytes(total)) (\(pct)%)"
            }
        }
        line += " \(rate)"
        FileHandle.standardError.write(Data((tty ? "\r\u{1B}[K\(line)" : "\(line)\n").utf8))
    }

    func finish() {
        if enabled && tty { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

import ArgumentParser
import Catalog
import Drill
import Foundation
import Support
import ObjectStore

/// Options shared by drctl restore and drctl verify: where and how PostgreSQL runs.
struct HostOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Directory of PostgreSQL server binaries (default: /usr/lib/postgresql/<major>/bin for the backup's major version).", valueName: "dir"))
    var pgBin: String?
    @Option(help: "When drctl runs as root, run PostgreSQL as this user (best one that owns nothing else: a hostile backup runs its code as it).") var runAs = "postgres"
    @Option(help: "The restored cluster's superuser, which checks connect as.") var dbUser = "postgres"
    @Option(help: ArgumentHelp("Where scratch directories go (default: $TMPDIR or /tmp).", valueName: "dir")) var scratchDir: String?
    @Option(help: ArgumentHelp("Give up on WAL replay after this long (e.g. 30m).", valueName: "duration")) var timeout = "2h"
    @Option(help: "WAL segments to read ahead of replay.") var readAhead = 16
    @Flag(help: "No progress output.") var quiet = false
    @Flag(help: "Start even when the disk looks too small (the estimate: the backup's cluster_size plus the WAL recovery keeps).") var skipSpaceCheck = false
    @Option(help: ArgumentHelp("Shared buffers of the restored server during replay, in MB (default: an eighth of the host's free memory, 128 to 2048).", valueName: "mb"))
    var sharedBuffers: Int?

    func validate() throws {
        guard parseSeconds(timeout) != nil else { throw ValidationError("--timeout \(timeout): not a duration (e.g. 90s, 30m, 2h)") }
        guard (1...256).contains(readAhead) else { throw ValidationError("--read-ahead must be 1...256") }
        if let b = sharedBuffers, !(16...262_144).contains(b) { throw ValidationError("--shared-buffers \(b): give 16 to 262144 (MB)") }
    }

    func restoreOptions() throws -> HostRestoreOptions {
        var o = HostRestoreOptions()
        o.owner = try ScratchDirectory.ownerID(stateDirectory: dataDirectory())
        o.pgBin = pgBin
        o.runAsUser = runAs
        o.databaseUser = dbUser
        o.scratchBase = scratchDir ?? ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        o.timeout = TimeInterval(parseSeconds(timeout) ?? 7200)
        o.prefetchWindow = readAhead
        o.prefetchWorkers = min(4, readAhead)
        o.checkSpace = !skipSpaceCheck
        o.sharedBuffersMB = sharedBuffers
        return o
    }
}

/// Progress lines on standard error, each with the seconds since the command started.
final class StepLog: @unchecked Sendable {
    let started = Date()
    let quiet: Bool
    init(quiet: Bool) { self.quiet = quiet }
    func callAsFunction(_ line: String) {
        guard !quiet else { return }
        let t = String(format: "%7.1fs", Date().timeIntervalSince(started))
        FileHandle.standardError.write(Data("[\(t)] \(KnownSecrets.shared.redactor.redact(line))\n".utf8))
    }
}

/// The newest drill in the default catalog, for a restore's time estimate (nil when none).
func lastDrill(workload: String?) -> DrillEvidence? {
    let path = defaultCatalogPath()
    guard FileManager.default.fileExists(atPath: path), let store = try? CatalogStore(path: path) else { return nil }
    return (try? store.drills(workload: workload, limit: 1))?.first
}

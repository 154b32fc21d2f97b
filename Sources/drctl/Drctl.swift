import ArgumentParser
import Foundation
import Storage
import Support
import Logging
import ObjectStore
import Policy

@main
struct Entry {
    static func main() {
        Memory.limitArenas()
        CrashReports.makeSafe()
        Drctl.main()
    }
}

struct Drctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drctl",
        abstract: "Backup and disaster-recovery orchestrator: prove that backups restore.",
        discussion: """
            drctl works against the object store that holds your Velero and CloudNativePG \
            (barman-cloud) backups. Exit status: 0 success; 1 the operation failed; \
            2 the object or bucket does not exist; 3 bad configuration or credentials; 4 (status) a workload \
            is not PROTECTED; 5 (alerts check) Alertmanager did not answer; 64 usage error.
            """,
        version: DrctlVersion.string,
        subcommands: [StatusCommand.self, BackupsCommand.self, VerifyCommand.self, RestoreCommand.self, WALRestoreCommand.self, CatalogCommand.self, PruneCommand.self, CopyCommand.self, LintCommand.self, RenderCommand.self, ApplyCommand.self, ServeCommand.self, AlertsCommand.self, RehearseCommand.self, ReportCommand.self, KeysCommand.self, S3Command.self]
    )
}

enum DrctlVersion {
    static let string = "0.1.0"
}

/// Exit codes shared by every command.
enum Exit {
    static let failure = ExitCode(1)
    static let notFound = ExitCode(2)
    static let config = ExitCode(3)
    /// drctl status: some workload is not PROTECTED.
    static let notProtected = ExitCode(4)
}

struct GlobalOptions: ParsableArguments {
    @Flag(name: [.short, .customLong("verbose")], help: "Log each request and retry to standard error.")
    var verbose = false

    func bootstrapLogging() {
        let level: Logger.Level = verbose ? .debug : .warning
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
    }
}

/// Loads policies for a command that acts on them: lint errors are printed and refuse the command.
func loadCheckedPolicies(_ paths: [String]) throws -> PolicySet {
    let diags = Diagnostics()
    let set = PolicyLoader.load(paths: paths, diagnostics: diags)
    Linter.lint(set, into: diags)
    if diags.hasErrors {
        for d in diags.sorted { FileHandle.standardError.write(Data("\(d)\n".utf8)) }
        throw ConfigError("the policies have errors (see above); run drctl lint")
    }
    return set
}

/// Runs a command body, turning errors into a one-line (redacted) message and an exit code.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as CleanExit {
        throw e
    } catch let e as ValidationError {
        throw e
    } catch {
        let message = KnownSecrets.shared.redactor.redact(String(describing: error))
        FileHandle.standardError.write(Data("drctl: error: \(message)\n".utf8))
        switch error {
        case let e as S3Error where e.isNotFound: throw Exit.notFound
        case StorageError.notFound: throw Exit.notFound
        case is ConfigError, is CredentialResolver.NotFound: throw Exit.config
        default: throw Exit.failure
        }
    }
}

private let warnedLock = NSLock()
nonisolated(unsafe) private var warned = Set<String>()

/// A warning on standard error, once per run however often its cause is met (a long-running
/// `drctl serve` says it once, not every sync).
func warnOnce(_ message: String) {
    let first = warnedLock.withLock { warned.insert(message).inserted }
    guard first else { return }
    FileHandle.standardError.write(Data("drctl: warning: \(KnownSecrets.shared.redactor.redact(message))\n".utf8))
}


extension PolicySet {
    /// The named workloads (all of them when none is named), or a usage error naming what there is.
    func backupPolicies(named names: [String]) throws -> [BackupPolicy] {
        if names.isEmpty { return backupPolicies }
        return try names.map { name in
            guard let p = backupPolicies.first(where: { $0.name.value == name }) else {
                throw ValidationError("no policy named '\(name)' (have: \(backupPolicies.map(\.name.value).sorted().joined(separator: ", ")))")
            }
            return p
        }
    }
}

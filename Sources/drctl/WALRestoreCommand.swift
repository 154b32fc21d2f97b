import ArgumentParser
import Drill
import Foundation
import Support
import Storage
import Layout
import ObjectStore

struct WALRestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wal-restore",
        abstract: "Fetch one WAL file from a barman-cloud archive: PostgreSQL's restore_command.",
        discussion: """
            restore_command = 'drctl wal-restore --source s3://bucket/path --server NAME %f %p'. \
            Finds the segment or timeline history file whatever its compression (plain or gzip), \
            decompresses it to the destination through a temporary file, and exits 1 when the \
            archive does not have it (which is how PostgreSQL learns where the archive ends). With \
            --spool, a segment that drctl restore/verify has already read ahead is moved into place \
            without a round trip. A `.partial` segment is never handed out for a full one.
            """)

    @OptionGroup var s3: S3Options
    @Option(help: ArgumentHelp("barman-cloud destination (CNPG destinationPath).", valueName: "s3://bucket/path")) var source: String
    @Option(help: "barman-cloud server name (CNPG serverName).") var server: String
    @Option(help: ArgumentHelp("Read-ahead directory filled by drctl restore/verify.", valueName: "dir")) var spool: String?
    @Argument(help: "The file PostgreSQL asks for (%f).") var walFile: String
    @Argument(help: "Where to put it (%p).") var destination: String

    func run() throws {
        // PostgreSQL treats an exit status above 125 as fatal to recovery; anything that goes
        // wrong here must be a plain "not available" (1).
        do {
            if let spool {
                switch WALSpool.take(walFile, spool: spool, target: destination) {
                case .moved: return
                case .failed(let why):
                    FileHandle.standardError.write(Data("drctl wal-restore: read-ahead of \(walFile) failed (\(why.trimmingCharacters(in: .whitespacesAndNewlines))); fetching it directly\n".utf8))
                case .notPlanned: break
                }
            }
            let (access, key) = try s3.open(source)
            let wal = WALSource(storage: access.storage, layout: BarmanLayout(root: key), server: server)
            guard let file = try wal.locate(walFile) else {
                if WALSegment(name: walFile) != nil {
                    FileHandle.standardError.write(Data("drctl wal-restore: \(walFile) is not in \(source) (server \(server))\n".utf8))
                }
                throw ExitCode(1)
            }
            try wal.fetch(file, to: destination)
        } catch let e as ExitCode {
            throw e
        } catch {
            let message = KnownSecrets.shared.redactor.redact(String(describing: error))
            FileHandle.standardError.write(Data("drctl wal-restore: \(walFile): \(message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

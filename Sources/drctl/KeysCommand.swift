import ArgumentParser
import Foundation
import Records
import Support

struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "The record key drctl seals its own records with (evidence, copy records, slot claims, prune journals).",
        discussion: """
            Whoever holds a bucket's keys (every CNPG pod, Velero) can write anything into it. drctl \
            decides what to delete, what to skip and what is healthy only on records it sealed with \
            an HMAC-SHA256 under a key only drctl holds, and on what its drills proved. Without a key \
            drctl still reads and restores, but deletes nothing.

            The key file holds one key per line; every key verifies, the last one signs. Rotate by \
            running create again (the new key signs, the old ones still verify) and removing an old \
            line once nothing sealed with it matters any more. drctl reads the file named by \
            DRCTL_RECORD_KEY_FILE, else /etc/drctl/record-key/keys (where deploy/ mounts Secret \
            drctl-record-key).
            """,
        subcommands: [Create.self, List.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a new key to a key file (created 0600 if absent); the new key signs from now on.",
            discussion: "In a cluster: drctl keys create --file keys && kubectl -n drctl create secret generic drctl-record-key --from-file=keys=keys (or update it with the new file).")
        @Option(help: ArgumentHelp("Key file (default: $DRCTL_RECORD_KEY_FILE).", valueName: "file")) var file: String?

        func run() throws {
            try runReportingErrors {
                guard let path = file ?? ProcessInfo.processInfo.environment["DRCTL_RECORD_KEY_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) else {
                    throw ValidationError("give --file FILE (or set DRCTL_RECORD_KEY_FILE)")
                }
                var existing = 0
                if FileManager.default.fileExists(atPath: path) {
                    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ConfigError("\(path): cannot be read") }
                    existing = try RecordKeyring.parse(text, origin: path).keys.count
                }
                let (id, line) = RecordKeyring.newKeyLine(now: Date())
                // Appended, never rewritten: an older key stays to verify what it sealed.
                let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw ConfigError("\(path): \(String(cString: strerror(errno)))") }
                defer { close(fd) }
                var st = stat()
                if fstat(fd, &st) == 0, st.st_mode & 0o077 != 0 {
                    FileHandle.standardError.write(Data("drctl: warning: \(path) is readable by others than its owner (chmod 600 it): whoever reads it can forge drctl's records\n".utf8))
                }
                try Array((line + "\n").utf8).withUnsafeBytes { try writeAll(fd, $0, path: path) }
                guard fsync(fd) == 0 else { throw ConfigError("\(path): \(String(cString: strerror(errno)))") }
                print("added key \(id) to \(path): it signs from now on\(existing > 0 ? "; \(existing) older key\(existing == 1 ? " still verifies" : "s still verify")" : "")")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The keys drctl reads (ids only) and which one signs.")
        @Option(name: [.short, .long], help: "Output format: table or json.") var output: OutputFormat = .table

        struct Row: Encodable { var id: String; var signs: Bool }

        func run() throws {
            try runReportingErrors {
                let ring = RecordKeyring.fromEnvironment()
                if let problem = ring.problem { throw ConfigError(problem) }
                guard !ring.keys.isEmpty else { throw ConfigError(ring.cannotSign ?? "no record key") }
                let rows = ring.keys.map { Row(id: $0.id, signs: $0.id == ring.signing?.id) }
                switch output {
                case .json: try printJSON(rows)
                case .table:
                    printTable([["KEY", "USE"]] + rows.map { [$0.id, $0.signs ? "signs and verifies" : "verifies"] })
                    print("from \(ring.origin)")
                }
            }
        }
    }
}

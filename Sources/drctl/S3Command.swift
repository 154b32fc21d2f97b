import ArgumentParser
import Foundation
import SigV4
import Support
import ObjectStore

struct S3Command: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "s3",
        abstract: "Inspect and move objects in the backup object store (Ceph RGW, AWS S3, any S3-compatible store).",
        discussion: "Addresses are s3://bucket/key. Credentials come from --credentials-dir, --profile, the AWS_* environment variables or ~/.aws, in that order.",
        subcommands: [List.self, Stat.self, Get.self, Put.self, Remove.self, Presign.self, MakeBucket.self]
    )
}

extension S3Command {
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls",
            abstract: "List objects under an s3://bucket/prefix.",
            discussion: "Without --recursive, keys are grouped at the next '/' as 'PRE name/' lines, like a directory listing.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var s3: S3Options
        @Argument(help: ArgumentHelp("The bucket and optional key prefix.", valueName: "s3://bucket[/prefix]")) var url: String
        @Flag(name: [.short, .long], help: "List every key under the prefix instead of one level.") var recursive = false
        @Option(help: "With --recursive: sub-prefixes listed at once (1 lists serially).") var parallel = 4
        @Option(name: [.short, .long], help: "Output format: table or json.") var output: OutputFormat = .table

        func run() throws {
            global.bootstrapLogging()
            try runReportingErrors {
                let target = try S3URL(parsing: url)
                let client = try s3.makeClient()
                let out = BufferedStdout()
                var first = true
                if output == .json { out.write("[") }
                let encoder = JSONCoding.encoder(pretty: false, precise: false)
                let pages: ((ListPage) throws -> Void) throws -> Void = { body in
                    if recursive {
                        try client.listObjectsParallel(bucket: target.bucket, prefix: target.key, parallelism: parallel, page: body)
                    } else {
                        try client.listObjects(bucket: target.bucket, prefix: target.key, delimiter: "/", page: body)
                    }
                }
                try pages { page in
                    for p in page.commonPrefixes {
                        switch output {
                        case .table: out.write(String(repeating: " ", count: 27) + "PRE \(p)\n")
                        case .json:
                            out.write((first ? "\n  " : ",\n  ") + "{\"prefix\":\(jsonString(p))}")
                            first = false
                        }
                    }
                    for o in page.objects {
                        switch output {
                        case .table:
                            let when = o.lastModified.map(formatTimestamp) ?? String(repeating: " ", count: 19)
                            let size = String(o.size)
                            out.write("\(when) \(String(repeating: " ", count: max(0, 12 - size.count)))\(size) \(o.key)\n")
                        case .json:
                            let json = String(decoding: try encoder.encode(o), as: UTF8.self)
                            out.write((first ? "\n  " : ",\n  ") + json)
                            first = false
                        }
                    }
                }
                if output == .json { out.write(first ? "]\n" : "\n]\n") }
                out.flush()
            }
        }
    }

    struct Stat: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one object's size, ETag, modification time and content type (HEAD).")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var s3: S3Options
        @Argument(help: ArgumentHelp("The object.", valueName: "s3://bucket/key")) var url: String
        @Option(name: [.short, .long], help: "Output format: table or json.") var output: OutputFormat = .table

        func run() throws {
            global.bootstrapLogging()
            try runReportingErrors {
                let target = try objectURL(url)
                let client = try s3.makeClient()
                let info = try client.headObject(target)
                switch output {
                case .json:
                    try printJSON(info)
                case .table:
                    print("""
                        Key:           \(target)
                        Size:          \(info.size) (\(formatBytes(info.size)))
                        ETag:          \(info.etag)\(info.etagIsMD5 ? "" : info.etag.contains("-") ? " (multipart)" : "")
                        Last modified: \(info.lastModified.map(formatTimestamp) ?? "-")
                        Content type:  \(info.contentType ?? "-")
                        """)
                }
            }
        }
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download an object to a file or standard output.",
            discussion: "The download is streamed, resumed after a broken connection, and checked (length always, MD5 where the ETag is one). A file is written under a temporary name and renamed into place only when complete; an existing file is never replaced without --force.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var s3: S3Options
        @Argument(help: ArgumentHelp("The object.", valueName: "s3://bucket/key")) var url: String
        @Argument(help: ArgumentHelp("Destination file, or - for standard output (default: the key's last component in the current directory).", valueName: "dest"))
        var destination: String?
        @Flag(help: "Replace the destination file if it exists.") var force = false
        @Flag(name: [.short, .long], help: "No progress output.") var quiet = false

        func run() throws {
            global.bootstrapLogging()
            try runReportingErrors {
                let target = try objectURL(url)
                let client = try s3.makeClient()
                let dest = destination ?? String(target.key.split(separator: "/").last ?? "")
                guard !dest.isEmpty else { throw ValidationError("cannot name a file after \(target); give a destination") }
                if dest == "-" {
                    _ = try client.getObject(target) { chunk in
                        var off = 0
                        while off < chunk.count {
                            let n = write(STDOUT_FILENO, chunk.baseAddress! + off, chunk.count - off)
                            guard n > 0 else { throw LocalError("write to standard output: \(String(cString: strerror(errno)))") }
                            off += n
                        }
                    }
                    return
                }
                var path = dest
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: dest, isDirectory: &isDir), isDir.boolValue {
                    path = (dest as NSString).appendingPathComponent(String(target.key.split(separator: "/").last ?? "object"))
                }
                let progress = ProgressPrinter(label: "get \(target.key)", enabled: !quiet)
                let info = try client.download(target, to: path, overwrite: force, progress: progress.callback)
                progress.finish()
                if !quiet { FileHandle.standardError.write(Data("downloaded \(target) to \(path) (\(formatBytes(info.size)))\n".utf8)) }
            }
        }
    }

    struct Put: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a file.",
            discussion: "Files over 64 MiB go up as a multipart upload with parallel parts; a failed upload is aborted, so no orphaned parts remain. Every part's MD5 is checked against its ETag and the result is confirmed with HEAD.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var s3: S3Options
        @Argument(help: ArgumentHelp("The file to upload.", valueName: "file")) var file: String
        @Argument(help: ArgumentHelp("Destination; a key ending in / gets the file's name appended.", valueName: "s3://bucket/key"))
        var url: String
        @Option(help: "Content-Type to store with the object.") var contentType: String?
        @Flag(name: [.short, .long], help: "No progress output.") var quiet = false

        func run() throws {
            global.bootstrapLogging()
            try runReportingErrors {
                var target = try S3URL(parsing: url)
                if target.key.isEmpty || target.key.hasSuffix("/") { target.key += (file as NSString).lastPathComponent }
                let client = try s3.makeClient()
                let progress = ProgressPrinter(label: "put \(target.key)", enabled: !quiet)
                let info = try client.upload(file: file, to: target, contentType: contentType, progress: progress.callback)
                progress.finish()
                if !quiet { FileHandle.standardError.write(Data("uploaded \(file) to \(target) (\(formatBytes(info.size)), ETag \(info.etag))\n".utf8)) }
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm",
            abstract: "Delete objects.",
            discussion: "Deletes exactly the keys named. With --recursive, every key under each prefix, in batches of 1,000; --dry-run shows what would go.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var s3: S3Options
        @Argument(help: ArgumentHelp("Objects (or prefixes with --recursive) to delete.", valueName: "s3://bucket/key"))
        var urls: [String]
        @Flag(name: [.short, .long], help: "Delete every object under each given prefix.") var recursive = false
        @Flag(help: "Print what would be deleted; delete nothing.") var dryRun = false

        func validate() throws {
            if urls.isEmpty { throw ValidationError("name at least one s3://bucket/key") }
        }

        func run() throws {
            global.bootstrapLogging()
            try runReportingErrors {
                let targets = try urls.map { try S3URL(parsing: $0) }
                if !recursive, let bad = targets.first(where: { $0.key.isEmpty }) {
                    throw ValidationError("\(bad) names a bucket, not an object; use --recursive to delete what is under it")
                }
                let client = try s3.makeClient()
                var failures: [DeleteFailure] = []
                for t in targets {
                    var keys: [String] = []
                    if recursive {
                        try client.listObjects(bucket: t.bucket, prefix: t.key) { keys += $0.objects.map(\.key) }
                    } else {
                        keys = [t.key]
                    }
                    for k in keys { print("\(dryRun ? "would delete" : "delete") s3://\(t.bucket)/\(k)") }
                    if dryRun || keys.isEmpty { continue }
                    if keys.count == 1 && !recursive {
                        try client.deleteObject(S3URL(bucket: t.bucket, key: keys[0]))
                    } else {
                        failures += try client.deleteObjects(bucket: t.bucket, keys: keys)
                    }
                }
                if !failures.isEmpty {
                    for f in failures { FileHandle.standardError.write(Data("drctl: not deleted: \(f)\n".utf8)) }
                    throw Exit.failure
                }
            }
        }
    }

    struct Presign: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a presigned URL that grants time-limited access to one object without credentials.",
            discussion: "Anyone holding the URL can use it until it expires: treat it as a secret.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var s3: S3Options
        @Argument(help: ArgumentHelp("The object.", valueName: "s3://bucket/key")) var url: String
        @Option(help: "How long the URL stays valid: seconds, or 15m, 12h, 7d (at most 7d).") var expires = "1h"
        @Option(help: "HTTP method the URL allows: GET or PUT.") var method = "GET"

        func validate() throws {
            guard parseSeconds(expires) != nil else { throw ValidationError("--expires '\(expires)' is not a duration like 3600, 15m, 12h or 7d") }
            guard ["GET", "PUT", "HEAD"].contains(method.uppercased()) else { throw ValidationError("--method must be GET, PUT or HEAD") }
        }

        func run() throws {
            global.bootstrapLogging()
            try runReportingErrors {
                let target = try objectURL(url)
                let client = try s3.makeClient()
                print(try client.presign(target, method: method.uppercased(), expires: parseSeconds(expires)!))
            }
        }
    }

    struct MakeBucket: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "mb", abstract: "Create a bucket.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var s3: S3Options
        @Argument(help: ArgumentHelp("The bucket to create.", valueName: "s3://bucket")) var url: String

        func run() throws {
            global.bootstrapLogging()
            try runReportingErrors {
                let target = try S3URL(parsing: url)
                guard target.key.isEmpty else { throw ValidationError("\(url): give only the bucket, s3://bucket") }
                let client = try s3.makeClient()
                try client.createBucket(target.bucket)
                print("created \(target)")
            }
        }
    }
}

func objectURL(_ s: String) throws -> S3URL {
    let u = try S3URL(parsing: s)
    guard !u.key.isEmpty else { throw ValidationError("\(s) names a bucket; give s3://bucket/key") }
    return u
}

func formatTimestamp(_ d: Date) -> String { RFC3339.formatReadable(d) }

func jsonString(_ s: String) -> String {
    String(decoding: try! JSONEncoder().encode(s), as: UTF8.self)
}

/// Standard output with a large buffer: a 20,000-key listing should not cost 20,000 writes.
final class BufferedStdout {
    private var buffer: [UInt8] = []
    func write(_ s: String) {
        buffer.append(contentsOf: s.utf8)
        if buffer.count > 1 << 16 { flush() }
    }
    func flush() {
        buffer.withUnsafeBytes { b in
            var off = 0
            while off < b.count {
                let n = Glibc.write(STDOUT_FILENO, b.baseAddress! + off, b.count - off)
                if n <= 0 { break }
                off += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

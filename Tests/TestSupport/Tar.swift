import Foundation

/// A ustar archive built entry by entry, for archives no tar program would write (link
/// ladders, hard links out of the tree, a file over a link), and for doctoring real ones.
public struct TarBuilder {
    public private(set) var bytes: [UInt8] = []
    public init() {}

    public enum Kind { case file([UInt8]), directory, symlink(String), hardlink(String) }

    public mutating func add(_ name: String, _ kind: Kind, mode: Int = 0o644) {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ at: Int, _ width: Int) { for (i, b) in s.utf8.prefix(width).enumerated() { h[at + i] = b } }
        var body: [UInt8] = []
        var type = "0", link = ""
        switch kind {
        case .file(let b): body = b
        case .directory: type = "5"
        case .symlink(let t): type = "2"; link = t
        case .hardlink(let t): type = "1"; link = t
        }
        precondition(name.utf8.count <= 100 && link.utf8.count <= 100, "TarBuilder writes names of up to 100 bytes: \(name)")
        put(name, 0, 100)
        put(String(format: "%07o", mode), 100, 8); put("0000000", 108, 8); put("0000000", 116, 8)
        put(String(format: "%011o", body.count), 124, 12); put("00000000000", 136, 12)
        put(type, 156, 1); put(link, 157, 100); put("ustar\u{0}00", 257, 8)
        put("        ", 148, 8)
        put(String(format: "%06o", h.reduce(0) { $0 + Int($1) }) + "\u{0} ", 148, 8)
        bytes += h + body + [UInt8](repeating: 0, count: (512 - body.count % 512) % 512)
    }

    public mutating func file(_ name: String, _ text: String) { add(name, .file(Array(text.utf8))) }

    /// A pax extended header ('x') for the next entry: records such as `path` and `linkpath`,
    /// whose values may hold any byte.
    public mutating func pax(_ records: [(String, String)]) {
        var body: [UInt8] = []
        for (k, v) in records {
            let rest = Array(" \(k)=".utf8) + Array(v.utf8) + [0x0A]
            var len = rest.count + 1
            while String(len).utf8.count + rest.count != len { len = String(len).utf8.count + rest.count }
            body += Array(String(len).utf8) + rest
        }
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ at: Int) { for (i, b) in s.utf8.enumerated() { h[at + i] = b } }
        put("./PaxHeaders/x", 0); put("0000644", 100); put("0000000", 108); put("0000000", 116)
        put(String(format: "%011o", body.count), 124); put("00000000000", 136); put("x", 156); put("ustar\u{0}00", 257)
        put("        ", 148)
        put(String(format: "%06o", h.reduce(0) { $0 + Int($1) }) + "\u{0} ", 148)
        bytes += h + body + [UInt8](repeating: 0, count: (512 - body.count % 512) % 512)
    }

    /// The archive with its end (two zero blocks).
    public var archive: [UInt8] { bytes + [UInt8](repeating: 0, count: 1024) }

    /// The entries of an archive GNU tar can read, as (name, kind), in order: enough to
    /// rebuild it with some entries replaced (regular files, directories and symbolic links).
    public static func entries(of tarFile: String) throws -> [(String, Kind)] {
        let dir = tempPath("untar")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let (st, out) = try run("/bin/tar", ["-xpf", tarFile, "-C", dir])
        guard st == 0 else { throw FixtureError(description: "tar -x \(tarFile): \(out)") }
        let (lst, names) = try run("/bin/tar", ["-tf", tarFile])
        guard lst == 0 else { throw FixtureError(description: "tar -t \(tarFile): \(names)") }
        return try names.split(separator: "\n").map(String.init).map { name in
            let path = dir + "/" + name
            let attrs = try FileManager.default.attributesOfItem(atPath: path)
            switch attrs[.type] as? FileAttributeType {
            case .typeDirectory?: return (name, .directory)
            case .typeSymbolicLink?: return (name, .symlink(try FileManager.default.destinationOfSymbolicLink(atPath: path)))
            default: return (name, .file(Array(try Data(contentsOf: URL(fileURLWithPath: path)))))
            }
        }
    }
}

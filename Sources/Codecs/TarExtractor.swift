import Foundation
import Support
import Paths

public struct TarError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// Streams a tar archive (ustar, with pax and GNU long names, as pg_basebackup and barman
/// write) into a directory. Nothing may land outside it, whatever the archive holds:
/// - every entry is created from a descriptor of the root, one component at a time with
///   `O_NOFOLLOW`, so nothing is ever written through a symbolic link (a link the archive made,
///   or one already there);
/// - symbolic links are created last, in `finish()`, and only when each one, followed through
///   every other link of the archive and any already on disk, still resolves inside the root
///   (a chain `d/up -> ..`, `d/up/x -> ..` is refused);
/// - absolute names, `..` above the root, hard links and any entry type but files, directories
///   and symbolic links are refused, and so is an entry whose path goes through a link or
///   that shares its name with one.
public final class TarExtractor {
    public let root: String
    private let rootFD: Int32
    /// The directory of the previous entry, kept open: archives list a directory's files together.
    private var cachedParent: (path: [String], fd: Int32)?
    /// Symbolic links to create once every file is in place, by their path below the root.
    private var links: [(path: [String], name: String, target: String)] = []
    private var linkPaths: Set<[String]> = []
    private var buffer: [UInt8] = []
    private var state: State = .header
    private var pending: (path: String, remaining: Int64, padding: Int, fd: Int32)?
    private var longName: String?
    private var paxPath: String?
    private var paxLink: String?
    private var zeroBlocks = 0
    public private(set) var files = 0
    public private(set) var bytes: Int64 = 0

    enum State { case header, data, skip(Int), extended(type: UInt8, remaining: Int, padding: Int), ended }

    public init(root: String) throws {
        self.root = (root as NSString).standardizingPath
        try FileManager.default.createDirectory(atPath: self.root, withIntermediateDirectories: true)
        rootFD = open(self.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else { throw TarError(description: "cannot open \(self.root): \(String(cString: strerror(errno)))") }
    }

    deinit {
        if let p = pending, p.fd >= 0 { close(p.fd) }
        if let c = cachedParent { close(c.fd) }
        close(rootFD)
    }

    public var isFinished: Bool { if case .ended = state { return true } else { return false } }

    public func feed(_ chunk: UnsafeRawBufferPointer) throws {
        var input = chunk[...]
        while !input.isEmpty {
            switch state {
            case .ended:
                return
            case .data:
                guard var p = pending else { state = .header; continue }
                let n = Int(min(Int64(input.count), p.remaining))
                if n > 0 {
                    try writeAll(p.fd, UnsafeRawBufferPointer(rebasing: input.prefix(n)), path: p.path)
                    p.remaining -= Int64(n)
                    bytes += Int64(n)
                    input = input.dropFirst(n)
                }
                if p.remaining == 0 {
                    close(p.fd)
                    pending = nil
                    files += 1
                    state = p.padding > 0 ? .skip(p.padding) : .header
                } else {
                    pending = p
                }
            case .extended(let type, let remaining, let padding):
                let k = min(remaining, input.count)
                smallData += input.prefix(k)
                input = input.dropFirst(k)
                if remaining - k > 0 {
                    state = .extended(type: type, remaining: remaining - k, padding: padding)
                } else {
                    applyExtended(type, smallData)
                    smallData.removeAll()
                    state = padding > 0 ? .skip(padding) : .header
                }
            case .skip(let n):
                let k = min(n, input.count)
                input = input.dropFirst(k)
                state = n - k > 0 ? .skip(n - k) : .header
            case .header:
                let need = 512 - buffer.count
                buffer += input.prefix(need)
                input = input.dropFirst(min(need, input.count))
                if buffer.count == 512 {
                    let block = buffer
                    buffer.removeAll(keepingCapacity: true)
                    try header(block)
                }
            }
        }
    }

    /// Checks the archive ended, then creates its symbolic links (see the type's comment).
    public func finish() throws {
        guard isFinished || (pending == nil && buffer.isEmpty && zeroBlocks > 0) else {
            throw TarError(description: "tar archive is truncated")
        }
        let targets = Dictionary(links.map { ($0.path, $0.target) }, uniquingKeysWith: { a, _ in a })
        for link in links {
            let resolved = Paths.resolve(link.target, in: Array(link.path.dropLast())) { p in targets[p] ?? onDiskLink(p) }
            guard resolved != nil else {
                throw TarError(description: "tar link \(link.name) -> \(link.target) leads outside the target directory (through the archive's links): refused")
            }
        }
        for link in links {
            let dir = try directory(Array(link.path.dropLast()), entry: link.name)
            guard symlinkat(link.target, dir, link.path.last!) == 0 else {
                throw TarError(description: "cannot create link \(link.name): \(String(cString: strerror(errno)))")
            }
        }
        links.removeAll()
        linkPaths.removeAll()
    }

    /// The target of a symbolic link already on disk at `path` below the root (from an earlier
    /// archive into the same root), nil when there is none.
    private func onDiskLink(_ path: [String]) -> String? {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = readlinkat(rootFD, path.joined(separator: "/"), &buf, 4096)
        guard n >= 0 else { return nil }
        return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func header(_ b: [UInt8]) throws {
        if b.allSatisfy({ $0 == 0 }) {
            zeroBlocks += 1
            if zeroBlocks == 2 { state = .ended }
            return
        }
        zeroBlocks = 0
        let sum = b.enumerated().reduce(0) { $0 + Int(($1.offset >= 148 && $1.offset < 156) ? 32 : $1.element) }
        guard let stored = octal(b[148..<156]), stored == sum else { throw TarError(description: "tar header checksum mismatch") }
        let type = b[156]
        guard let size = octal(b[124..<136]) else { throw TarError(description: "bad size in tar header") }
        let padding = Int((512 - size % 512) % 512)
        func field(_ r: Range<Int>) -> String { String(decoding: b[r].prefix { $0 != 0 }, as: UTF8.self) }
        var name = field(0..<100)
        let prefix = field(345..<500)
        if !prefix.isEmpty && b[257..<262].elementsEqual(Array("ustar".utf8)) { name = prefix + "/" + name }
        if let l = longName { name = l; longName = nil }
        if let p = paxPath { name = p; paxPath = nil }
        var link = field(157..<257)
        if let l = paxLink { link = l; paxLink = nil }

        switch type {
        case UInt8(ascii: "L"), UInt8(ascii: "x"), UInt8(ascii: "g"):
            // Long name (GNU) or extended header (pax): collect its data, apply it to the next entry.
            guard size <= 1 << 20 else { throw TarError(description: "tar extended header of \(size) bytes: refused") }
            smallData = []
            state = size > 0 ? .extended(type: type, remaining: Int(size), padding: padding) : .header
            return
        default:
            break
        }
        // A pax name may hold any byte; the kernel stops at a NUL, so "..\0" would be ".." to it
        // and not to the checks below. Control characters have no place in a data directory either.
        for (what, text) in [("name", name), ("link target", link)] where text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw TarError(description: "tar entry \(name.debugDescription) has a control character in its \(what): refused")
        }
        guard let parts = Paths.components(name) else {
            throw TarError(description: name.hasPrefix("/") || name.isEmpty ? "tar entry '\(name)' is an absolute path: refused"
                                                                             : "tar entry '\(name)' leaves the target directory: refused")
        }
        // Nothing goes through, or replaces, a link of the archive (those are created last).
        for i in parts.indices where linkPaths.contains(Array(parts[...i])) {
            throw TarError(description: i == parts.count - 1 ? "tar entry \(name) has the name of a link earlier in the archive: refused"
                                                             : "tar entry \(name) goes through the link \(parts[...i].joined(separator: "/")): refused")
        }
        switch type {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
            guard let leaf = parts.last else { throw TarError(description: "tar entry '\(name)' names the target directory itself, not a file: refused") }
            let dir = try directory(Array(parts.dropLast()), entry: name)
            let fd = openat(dir, leaf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode(b))
            guard fd >= 0 else { throw TarError(description: "cannot create \(name): \(String(cString: strerror(errno)))") }
            pending = (name, size, padding, fd)
            if size == 0 {
                close(fd)
                pending = nil
                files += 1
                state = .header
            } else {
                state = .data
            }
        case UInt8(ascii: "5"):
            _ = try directory(parts, entry: name)
            state = padding > 0 || size > 0 ? .skip(Int(size) + padding) : .header
        case UInt8(ascii: "2"):
            // A symbolic link must stay inside the root (pg_tblspc links are refused here).
            guard !parts.isEmpty else { throw TarError(description: "tar link '\(name)' names the target directory itself: refused") }
            guard !link.isEmpty, !link.hasPrefix("/") else { throw TarError(description: "tar link target of \(name) '\(link)' is an absolute path: refused") }
            guard Paths.resolve(link, in: Array(parts.dropLast()), linkTarget: { _ in nil }) != nil else {
                throw TarError(description: "tar link target of \(name) '\(link)' leaves the target directory: refused")
            }
            guard !linkPaths.contains(parts) else { throw TarError(description: "tar link \(name) appears twice: refused") }
            links.append((parts, name, link))   // its directory is made with it, in finish()
            linkPaths.insert(parts)
            state = padding > 0 || size > 0 ? .skip(Int(size) + padding) : .header
        case UInt8(ascii: "1"):
            throw TarError(description: "tar entry \(name) is a hard link (to '\(link)'), which is not restored (only files, directories and symbolic links)")
        default:
            throw TarError(description: "tar entry \(name) has type '\(Character(UnicodeScalar(type)))', which is not restored (only files, directories and links)")
        }
    }

    private var smallData: [UInt8] = []

    private func applyExtended(_ type: UInt8, _ data: [UInt8]) {
        if type == UInt8(ascii: "L") {
            longName = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
        } else if type == UInt8(ascii: "x") {
            for (k, v) in parsePax(data) {
                if k == "path" { paxPath = v }
                if k == "linkpath" { paxLink = v }
            }
        }
        // "g" (global pax header) carries nothing drctl uses.
    }

    private func parsePax(_ data: [UInt8]) -> [(String, String)] {
        var out: [(String, String)] = []
        var rest = data[...]
        // A record is "<length> <key>=<value>\n", the length counting the whole record; one too
        // short to hold its own length and space ends the parse (found by drctl-fuzz tar).
        while let sp = rest.firstIndex(of: UInt8(ascii: " ")), let len = Int(String(decoding: rest[rest.startIndex..<sp], as: UTF8.self)),
              len > sp - rest.startIndex + 1, rest.count >= len {
            let record = rest.prefix(len)
            let body = record[(sp + 1)...].dropLast()   // without the trailing newline
            if let eq = body.firstIndex(of: UInt8(ascii: "=")) {
                out.append((String(decoding: body[body.startIndex..<eq], as: UTF8.self), String(decoding: body[(eq + 1)...], as: UTF8.self)))
            }
            rest = rest.dropFirst(len)
        }
        return out
    }

    private func octal(_ s: ArraySlice<UInt8>) -> Int64? {
        let t = s.prefix { $0 != 0 && $0 != UInt8(ascii: " ") }.drop { $0 == UInt8(ascii: " ") }
        if t.isEmpty { return 0 }
        return Int64(String(decoding: t, as: UTF8.self), radix: 8)
    }

    /// The directory `path` below the root, created as needed (mkdir -p) and opened one
    /// component at a time without following links: a link where a directory should be is an
    /// error, never a way out. The descriptor stays owned by the cache.
    private func directory(_ path: [String], entry: String) throws -> Int32 {
        if path.isEmpty { return rootFD }
        if let c = cachedParent, c.path == path { return c.fd }
        var fd = rootFD
        for (i, component) in path.enumerated() {
            if mkdirat(fd, component, 0o755) != 0 && errno != EEXIST {
                let e = errno
                if fd != rootFD { close(fd) }
                throw TarError(description: "cannot create directory \(path[...i].joined(separator: "/")) for \(entry): \(String(cString: strerror(e)))")
            }
            let next = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let e = errno
            var st = stat()
            let isLink = next < 0 && fstatat(fd, component, &st, AT_SYMLINK_NOFOLLOW) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
            if fd != rootFD { close(fd) }
            guard next >= 0 else {
                let why = isLink ? "is a symbolic link" : e == ENOTDIR ? "is not a directory" : String(cString: strerror(e))
                throw TarError(description: "tar entry \(entry): \(path[...i].joined(separator: "/")) \(why): refused")
            }
            fd = next
        }
        if let c = cachedParent { close(c.fd) }
        cachedParent = (path, fd)
        return fd
    }

    private func mode(_ b: [UInt8]) -> mode_t { mode_t(octal(b[100..<108]) ?? 0o600) & 0o777 }
}

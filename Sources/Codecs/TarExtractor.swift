import Foundation
import Paths

public struct TarError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// Streams a tar archive (ustar, with pax and GNU long names, as pg_basebackup and barman
/// write) into a directory. Nothing may land outside it: absolute names, `..` components and
/// links pointing out of it are refused, and so is any entry type but files, directories and
/// symbolic links that stay inside.
public final class TarExtractor {
    public let root: String
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
    }

    deinit { if let p = pending, p.fd >= 0 { close(p.fd) } }

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

    public func finish() throws {
        guard isFinished || (pending == nil && buffer.isEmpty && zeroBlocks > 0) else {
            throw TarError(description: "tar archive is truncated")
        }
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
        let target = try safePath(name)
        switch type {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
            try makeDirectories(Paths.parent(target))
            let fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode(b))
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
            try makeDirectories(target)
            state = padding > 0 || size > 0 ? .skip(Int(size) + padding) : .header
        case UInt8(ascii: "2"):
            // A symbolic link must resolve inside the root (pg_tblspc links are refused here).
            let resolved = link.hasPrefix("/") ? link : Paths.parent(name) + "/" + link
            _ = try safePath(resolved, what: "link target of \(name)")
            try makeDirectories(Paths.parent(target))
            guard symlink(link, target) == 0 else { throw TarError(description: "cannot create link \(name): \(String(cString: strerror(errno)))") }
            state = .header
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

    func safePath(_ name: String, what: String = "entry") throws -> String {
        guard !name.isEmpty, !name.hasPrefix("/") else { throw TarError(description: "tar \(what) '\(name)' is an absolute path: refused") }
        var parts: [Substring] = []
        for c in name.split(separator: "/") where c != "." {
            if c == ".." {
                guard !parts.isEmpty else { throw TarError(description: "tar \(what) '\(name)' leaves the target directory: refused") }
                parts.removeLast()
            } else {
                parts.append(c)
            }
        }
        return root + "/" + parts.joined(separator: "/")
    }

    private func octal(_ s: ArraySlice<UInt8>) -> Int64? {
        let t = s.prefix { $0 != 0 && $0 != UInt8(ascii: " ") }.drop { $0 == UInt8(ascii: " ") }
        if t.isEmpty { return 0 }
        return Int64(String(decoding: t, as: UTF8.self), radix: 8)
    }

    /// mkdir -p below the root only: if the root was removed under a running extraction (an
    /// interrupted restore being cleaned up), fail instead of creating it again.
    private func makeDirectories(_ path: String) throws {
        guard path == root || path.hasPrefix(root + "/") else { throw TarError(description: "\(path) is outside \(root)") }
        guard access(root, F_OK) == 0 else { throw TarError(description: "\(root) no longer exists") }
        var current = root
        for component in path.dropFirst(root.count).split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw TarError(description: "mkdir \(current): \(String(cString: strerror(errno)))")
            }
        }
    }

    private func mode(_ b: [UInt8]) -> mode_t { mode_t(octal(b[100..<108]) ?? 0o600) & 0o777 }
}

func writeAll(_ fd: Int32, _ chunk: UnsafeRawBufferPointer, path: String) throws {
    var off = 0
    while off < chunk.count {
        let n = write(fd, chunk.baseAddress! + off, chunk.count - off)
        if n < 0 {
            if errno == EINTR { continue }
            throw TarError(description: "write \(path): \(String(cString: strerror(errno)))")
        }
        off += n
    }
}

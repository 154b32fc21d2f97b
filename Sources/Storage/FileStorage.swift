import Foundation
import Support

/// A directory tree laid out exactly as a bucket: the object `a/b/c` is the file `ROOT/a/b/c`.
/// For a bucket copied to a disk, an air-gapped host or a mounted NAS, and for tests without an
/// object store. Keys that could name something outside the root (`..`, `.`, empty segments, a
/// NUL, a leading `/`) are refused; so are links inside the tree, which a copy of a bucket never
/// holds. Writes go to a temporary file, fsynced, then renamed: whole or not at all.
public struct FileStorage: StorageWriter {
    /// A file in the root that marks it as a bucket's (optional; see `StorageURL.parse`).
    public static let marker = ".drctl-bucket"
    public let root: String
    public var bucketName: String { root }
    public var location: String { "file://\(root)" }

    public init(root: String) {
        self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    func path(_ key: String) throws -> String {
        guard !key.isEmpty, !key.hasPrefix("/"), !key.contains("\0") else { throw StorageError.invalidKey(key, "empty, absolute or holding a NUL") }
        for segment in key.split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty || segment == "." || segment == ".." { throw StorageError.invalidKey(key, "an empty, '.' or '..' segment") }
        }
        return root + "/" + key
    }

    /// Regular files only, never through a link (lstat).
    func stat(_ path: String) -> (size: Int64, modified: Date, isDirectory: Bool)? {
        var st = Foundation.stat()
        guard lstat(path, &st) == 0 else { return nil }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFDIR else { return nil }
        let modified = Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
        return (Int64(st.st_size), modified, kind == S_IFDIR)
    }

    public func list(prefix: String, delimiter: String?, startAfter: String?, _ page: ([StoredObject], [String]) throws -> Void) throws {
        // Walk only the directory the prefix is in; keys sort as byte strings, as S3's do.
        let dirKey = prefix.contains("/") ? String(prefix[...prefix.lastIndex(of: "/")!]) : ""
        var objects: [StoredObject] = []
        var prefixes = Set<String>()
        func walk(_ dirKey: String) throws {
            let dir = dirKey.isEmpty ? root : root + "/" + dirKey.dropLast()
            guard let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
            for name in entries where !(dirKey.isEmpty && name == Self.marker) {
                if name.hasPrefix(".drctl-tmp-") { continue }
                let key = dirKey + name
                guard let st = stat(dir + "/" + name) else { continue }
                if st.isDirectory {
                    let sub = key + "/"
                    guard sub.hasPrefix(prefix) || prefix.hasPrefix(sub) else { continue }
                    if let delimiter, delimiter == "/", sub.hasPrefix(prefix), sub.count > prefix.count {
                        prefixes.insert(sub)
                        continue
                    }
                    try walk(sub)
                } else if key.hasPrefix(prefix) {
                    if let delimiter, let r = key.dropFirst(prefix.count).range(of: delimiter) {
                        prefixes.insert(String(key[..<r.upperBound]))
                        continue
                    }
                    objects.append(StoredObject(key: key, size: st.size, lastModified: st.modified))
                }
            }
        }
        try walk(dirKey)
        objects.sort { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
        if let startAfter { objects = objects.filter { Array($0.key.utf8).lexicographicallyPrecedes(Array(startAfter.utf8)) == false && $0.key != startAfter } }
        let sortedPrefixes = prefixes.filter { startAfter == nil || $0 > startAfter! }.sorted()
        var i = 0
        repeat {
            let chunk = Array(objects[i..<min(i + 1000, objects.count)])
            try page(chunk, i == 0 ? sortedPrefixes : [])
            i += 1000
        } while i < objects.count
    }

    public func head(_ key: String) throws -> StoredObject? {
        let p = try path(key)
        guard let st = stat(p), !st.isDirectory else { return nil }
        return StoredObject(key: key, size: st.size, lastModified: st.modified)
    }

    public func get(_ key: String, range: ClosedRange<Int64>?, _ chunk: (UnsafeRawBufferPointer) throws -> Void) throws {
        let p = try path(key)
        let fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { throw StorageError.notFound(key) }
            throw StorageError.io("\(location)/\(key): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var offset = range?.lowerBound ?? 0
        let end = range.map { $0.upperBound + 1 } ?? Int64.max
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while offset < end {
            let want = Int(min(Int64(buffer.count), end - offset))
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(offset)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError.io("\(location)/\(key): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            try buffer.withUnsafeBytes { try chunk(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            offset += Int64(n)
        }
    }

    @discardableResult
    public func put(_ key: String, bytes: [UInt8], contentType: String?) throws -> StoredObject { try put(key, bytes: bytes, lastModified: nil) }

    /// With `lastModified`, the file's modification time is set to it: a copy of a bucket keeps
    /// each object's time, which WAL and backup times (and so the RPO evidence) are read from.
    @discardableResult
    public func put(_ key: String, bytes: [UInt8], lastModified: Date?) throws -> StoredObject {
        let p = try path(key)
        let dir = (p as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tmp = dir + "/.drctl-tmp-\(UUID().uuidString)"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StorageError.io("\(location)/\(key): \(String(cString: strerror(errno)))") }
        var ok = false
        defer { if !ok { unlink(tmp) } }
        do {
            try bytes.withUnsafeBytes { try writeAll(fd, $0, path: p) }
        } catch {
            close(fd)
            throw StorageError.io("\(location)/\(key): \(error)")
        }
        if let lastModified {
            let t = lastModified.timeIntervalSince1970
            var times = [timespec(tv_sec: Int(t.rounded(.down)), tv_nsec: Int((t - t.rounded(.down)) * 1e9)),
                         timespec(tv_sec: Int(t.rounded(.down)), tv_nsec: Int((t - t.rounded(.down)) * 1e9))]
            guard futimens(fd, &times) == 0 else { close(fd); throw StorageError.io("\(location)/\(key): \(String(cString: strerror(errno)))") }
        }
        guard fsync(fd) == 0, close(fd) == 0 else { throw StorageError.io("\(location)/\(key): \(String(cString: strerror(errno)))") }
        guard rename(tmp, p) == 0 else { throw StorageError.io("\(location)/\(key): \(String(cString: strerror(errno)))") }
        ok = true
        return try head(key) ?? StoredObject(key: key, size: Int64(bytes.count))
    }

    public func delete(versions: [StoredVersion]) throws -> [DeleteRefusal] {
        var refused: [DeleteRefusal] = []
        for v in versions {
            let p = try path(v.key)
            if unlink(p) != 0 && errno != ENOENT { refused.append(DeleteRefusal(key: v.key, code: "IOError", message: String(cString: strerror(errno)))) }
        }
        return refused
    }

    /// A directory has no Object Lock (an immutable copy is the file system's business: chattr +i, WORM media).
    public func bucketLock() throws -> BucketLock { BucketLock(enabled: false) }
}

import Foundation
import Support

/// A directory tree laid out exactly as a bucket: the object `a/b/c` is the file `ROOT/a/b/c`.
/// For a bucket copied to a disk, an air-gapped host or a mounted NAS, and for tests without an
/// object store. Keys that could name something outside the root (`..`, `.`, empty segments, a
/// NUL, a leading `/`) are refused. Below the root every path component is opened relative to
/// its parent's descriptor with O_NOFOLLOW, so a link anywhere in the tree (planted, or kept by
/// `rsync -a`) is never followed: not when reading, listing, writing or deleting. A copy of a
/// bucket holds no links; one found is skipped in a listing and refused by name. Writes go to a
/// temporary file, fsynced, then renamed: whole or not at all.
public struct FileStorage: StorageWriter {
    /// A file in the root that marks it as a bucket's (optional; see `StorageURL.parse`).
    public static let marker = ".drctl-bucket"
    public let root: String
    public var bucketName: String { root }
    public var location: String { "file://\(root)" }

    public init(root: String) {
        self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    /// The key's directory components and file name, refused when it could leave the root.
    func split(_ key: String) throws -> (dirs: [String], name: String) {
        guard !key.isEmpty, !key.hasPrefix("/"), !key.contains("\0") else { throw StorageError.invalidKey(key, "empty, absolute or holding a NUL") }
        let parts = key.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for p in parts where p.isEmpty || p == "." || p == ".." { throw StorageError.invalidKey(key, "an empty, '.' or '..' segment") }
        return (Array(parts.dropLast()), parts.last!)
    }

    func failure(_ what: String) -> StorageError { .io("\(location)/\(what): \(String(cString: strerror(errno)))") }

    /// The root's descriptor; the root itself is the operator's path and may be a link (a mount point).
    func openRoot() throws -> Int32 {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { throw StorageError.notFound(root) }
            throw StorageError.io("\(location): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    /// The directory `dirs` below the root, each component opened with O_NOFOLLOW from its
    /// parent's descriptor (`create`: made where missing). nil when one is missing, or is a link
    /// or a file (nothing is stored there, as far as a bucket goes).
    func openDirectory(_ dirs: [String], create: Bool) throws -> Int32? {
        // A copy being written starts with its root (the operator's path, links and all).
        if create && !FileManager.default.fileExists(atPath: root) {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        }
        var fd = try openRoot()
        for d in dirs {
            var next = openat(fd, d, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 && errno == ENOENT && create {
                if mkdirat(fd, d, 0o755) != 0 && errno != EEXIST { let e = failure(d); close(fd); throw e }
                next = openat(fd, d, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            if next < 0 {
                let missing = errno == ENOENT || errno == ENOTDIR || errno == ELOOP
                let e = failure(dirs.joined(separator: "/"))
                close(fd)
                if missing { return nil }
                throw e
            }
            close(fd)
            fd = next
        }
        return fd
    }

    /// A regular file or directory in `dirfd`, never through a link.
    static func stat(_ dirfd: Int32, _ name: String) -> (size: Int64, modified: Date, isDirectory: Bool)? {
        var st = Foundation.stat()
        guard fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFDIR else { return nil }
        let modified = Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
        return (Int64(st.st_size), modified, kind == S_IFDIR)
    }

    /// The names in a directory (without `.` and `..`).
    static func entries(_ fd: Int32) throws -> [String] {
        let dup = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard dup >= 0, let dir = fdopendir(dup) else { throw StorageError.io("readdir: \(String(cString: strerror(errno)))") }
        defer { closedir(dir) }
        var out: [String] = []
        while let e = readdir(dir) {
            let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }

    public func list(prefix: String, delimiter: String?, startAfter: String?, _ page: ([StoredObject], [String]) throws -> Void) throws {
        // Walk only the directory the prefix is in; keys sort as byte strings, as S3's do.
        let dirKey = prefix.contains("/") ? String(prefix[...prefix.lastIndex(of: "/")!]) : ""
        let startDirs = dirKey.split(separator: "/").map(String.init)
        if startDirs.contains(where: { $0 == "." || $0 == ".." }) { throw StorageError.invalidKey(prefix, "a '.' or '..' segment") }
        var objects: [StoredObject] = []
        var prefixes = Set<String>()
        func walk(_ fd: Int32, _ dirKey: String) throws {
            for name in try Self.entries(fd) where !(dirKey.isEmpty && name == Self.marker) {
                if name.hasPrefix(".drctl-tmp-") { continue }
                let key = dirKey + name
                guard let st = Self.stat(fd, name) else { continue }   // a link or a device: not an object
                if st.isDirectory {
                    let sub = key + "/"
                    guard sub.hasPrefix(prefix) || prefix.hasPrefix(sub) else { continue }
                    if let delimiter, delimiter == "/", sub.hasPrefix(prefix), sub.count > prefix.count {
                        prefixes.insert(sub)
                        continue
                    }
                    let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    guard child >= 0 else {
                        if errno == ENOENT || errno == ELOOP || errno == ENOTDIR { continue }   // gone or replaced meanwhile
                        throw failure(sub)
                    }
                    defer { close(child) }
                    try walk(child, sub)
                } else if key.hasPrefix(prefix) {
                    if let delimiter, let r = key.dropFirst(prefix.count).range(of: delimiter) {
                        prefixes.insert(String(key[..<r.upperBound]))
                        continue
                    }
                    objects.append(StoredObject(key: key, size: st.size, lastModified: st.modified))
                }
            }
        }
        // A missing root is an error (a typo must not read as an empty bucket); a missing prefix is empty.
        if let fd = try openDirectory(startDirs, create: false) {
            defer { close(fd) }
            try walk(fd, dirKey)
        }
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
        let (dirs, name) = try split(key)
        guard let fd = try openDirectory(dirs, create: false) else { return nil }
        defer { close(fd) }
        guard let st = Self.stat(fd, name), !st.isDirectory else { return nil }
        return StoredObject(key: key, size: st.size, lastModified: st.modified)
    }

    public func get(_ key: String, range: ClosedRange<Int64>?, _ chunk: (UnsafeRawBufferPointer) throws -> Void) throws {
        let (dirs, name) = try split(key)
        guard let dirfd = try openDirectory(dirs, create: false) else { throw StorageError.notFound(key) }
        let fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        let openErrno = errno
        close(dirfd)
        guard fd >= 0 else {
            if openErrno == ENOENT || openErrno == ENOTDIR { throw StorageError.notFound(key) }
            if openErrno == ELOOP { throw StorageError.invalidKey(key, "a link, which a copy of a bucket does not hold") }
            throw StorageError.io("\(location)/\(key): \(String(cString: strerror(openErrno)))")
        }
        defer { close(fd) }
        var st = Foundation.stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { throw StorageError.notFound(key) }
        var offset = range?.lowerBound ?? 0
        let end = range.map { $0.upperBound + 1 } ?? Int64.max
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while offset < end {
            let want = Int(min(Int64(buffer.count), end - offset))
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(offset)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure(key)
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
        try Fence.process.check("put \(location)/\(key)")
        return try put(key, lastModified: lastModified) { fd in try bytes.withUnsafeBytes { try writeAll(fd, $0, path: "\(location)/\(key)") } }
    }

    /// Linked into place only when no file of that name exists (link(2) refuses to replace one).
    public func create(_ key: String, bytes: [UInt8], contentType: String?) throws -> Bool? {
        try Fence.process.check("put \(location)/\(key)")
        do {
            _ = try put(key, lastModified: nil, exclusive: true) { fd in try bytes.withUnsafeBytes { try writeAll(fd, $0, path: "\(location)/\(key)") } }
            return true
        } catch CreateConflict.exists {
            return false
        }
    }

    enum CreateConflict: Error { case exists }

    /// `write` fills the new file's descriptor; the file replaces `key` only once written and
    /// synced (with `exclusive`, it is put there only if no file of that name is).
    func put(_ key: String, lastModified: Date?, exclusive: Bool = false, _ write: (Int32) throws -> Void) throws -> StoredObject {
        let (dirs, name) = try split(key)
        guard let dirfd = try openDirectory(dirs, create: true) else {
            throw StorageError.invalidKey(key, "a path through a link or a file, which a copy of a bucket does not hold")
        }
        defer { close(dirfd) }
        let tmp = ".drctl-tmp-\(UUID().uuidString)"
        let fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(key) }
        var ok = false
        defer { if !ok { unlinkat(dirfd, tmp, 0) } }
        do {
            try write(fd)
        } catch {
            close(fd)
            throw StorageError.io("\(location)/\(key): \(error)")
        }
        if let lastModified {
            let t = lastModified.timeIntervalSince1970
            var times = [timespec(tv_sec: Int(t.rounded(.down)), tv_nsec: Int((t - t.rounded(.down)) * 1e9)),
                         timespec(tv_sec: Int(t.rounded(.down)), tv_nsec: Int((t - t.rounded(.down)) * 1e9))]
            guard futimens(fd, &times) == 0 else { let e = failure(key); close(fd); throw e }
        }
        guard fsync(fd) == 0, close(fd) == 0 else { throw failure(key) }
        if exclusive {
            guard linkat(dirfd, tmp, dirfd, name, 0) == 0 else {
                if errno == EEXIST { throw CreateConflict.exists }
                throw failure(key)
            }
            unlinkat(dirfd, tmp, 0)
        } else {
            // renameat replaces a file, or a link, of that name: it never writes through it.
            guard renameat(dirfd, tmp, dirfd, name) == 0 else { throw failure(key) }
        }
        ok = true
        guard let stored = try head(key) else { throw StorageError.io("\(location)/\(key): gone right after it was written") }
        return stored
    }

    /// Streamed from the file in 1 MiB reads, through the same no-link, temporary-then-rename path.
    @discardableResult
    public func put(_ key: String, file path: String, lastModified: Date?) throws -> StoredObject {
        try Fence.process.check("put \(location)/\(key)")
        let src = open(path, O_RDONLY | O_CLOEXEC)
        guard src >= 0 else { throw StorageError.io("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(src) }
        return try put(key, lastModified: lastModified) { fd in
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(src, $0.baseAddress!, $0.count) }
                if n < 0 { if errno == EINTR { continue }; throw StorageError.io("\(path): \(String(cString: strerror(errno)))") }
                if n == 0 { return }
                try buffer.withUnsafeBytes { try writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[0..<n]), path: "\(location)/\(key)") }
            }
        }
    }

    public func delete(versions: [StoredVersion]) throws -> [DeleteRefusal] {
        try Fence.process.check("delete in \(location)")
        var refused: [DeleteRefusal] = []
        for v in versions {
            let (dirs, name) = try split(v.key)
            guard let dirfd = try openDirectory(dirs, create: false) else { continue }   // nothing there: as S3, no error
            if unlinkat(dirfd, name, 0) != 0 && errno != ENOENT {
                refused.append(DeleteRefusal(key: v.key, code: "IOError", message: String(cString: strerror(errno))))
            }
            close(dirfd)
        }
        return refused
    }

    /// A directory has no Object Lock (an immutable copy is the file system's business: chattr +i, WORM media).
    public func bucketLock() throws -> BucketLock { BucketLock(enabled: false) }
}

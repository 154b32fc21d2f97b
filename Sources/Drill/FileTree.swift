import Foundation
import Support

/// Whole-tree operations that never follow a symbolic link, even one swapped in while they run:
/// every directory is opened with `O_NOFOLLOW` relative to its parent's descriptor, and every
/// entry is changed or removed relative to that descriptor. As root, a path-based walk over a
/// tree another user can write (a restored data directory owned by PostgreSQL's user) could be
/// steered into `/etc`.
public enum FileTree {
    /// The names in the directory `fd` (without `.` and `..`), with whether each is a directory.
    static func entries(_ fd: Int32) -> [(name: String, isDirectory: Bool)] {
        let copy = dup(fd)
        guard copy >= 0, let dir = fdopendir(copy) else { if copy >= 0 { close(copy) }; return [] }
        defer { closedir(dir) }
        var out: [(String, Bool)] = []
        while let e = readdir(dir) {
            let name = withUnsafePointer(to: &e.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
            if name == "." || name == ".." { continue }
            var st = stat()
            let isDir = fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
            out.append((name, isDir))
        }
        return out
    }

    /// `chown -R` without following links: the tree at `path` and everything in it.
    public static func chown(_ path: String, uid: uid_t, gid: gid_t) throws {
        guard lchown(path, uid, gid) == 0 else { throw LocalError("chown \(path): \(String(cString: strerror(errno)))") }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return }   // not a directory (or a link): done
        defer { close(fd) }
        try chownContents(fd, path: path, uid: uid, gid: gid)
    }

    static func chownContents(_ fd: Int32, path: String, uid: uid_t, gid: gid_t) throws {
        for (name, isDir) in entries(fd) {
            guard fchownat(fd, name, uid, gid, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw LocalError("chown \(path)/\(name): \(String(cString: strerror(errno)))")
            }
            guard isDir else { continue }
            let sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard sub >= 0 else { continue }   // replaced by a non-directory meanwhile: not followed
            defer { close(sub) }
            try chownContents(sub, path: path + "/" + name, uid: uid, gid: gid)
        }
    }

    /// `rm -rf path` without following links; true when nothing is left.
    @discardableResult
    public static func remove(_ path: String) -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0 else { return errno == ENOENT }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { return unlink(path) == 0 || errno == ENOENT }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd >= 0 {
            removeContents(fd)
            close(fd)
        }
        return rmdir(path) == 0 || errno == ENOENT
    }

    static func removeContents(_ fd: Int32) {
        for (name, isDir) in entries(fd) {
            if isDir {
                let sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if sub >= 0 {
                    removeContents(sub)
                    close(sub)
                }
                unlinkat(fd, name, AT_REMOVEDIR)
            } else {
                unlinkat(fd, name, 0)
            }
        }
    }

    /// A new file only its owner can read (0600), never through a link nor over an existing
    /// file, given to `owner` when set; on disk before it returns when `durable`.
    public static func createPrivateFile(_ path: String, contents: [UInt8], owner: RunAs? = nil, durable: Bool = false) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw LocalError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try contents.withUnsafeBytes { try writeAll(fd, $0, path: path) }
        if let owner, fchown(fd, owner.uid, owner.gid) != 0 { throw LocalError("chown \(path): \(String(cString: strerror(errno)))") }
        if durable { fsync(fd) }
    }

    /// A new directory only its owner can enter (0700), given to `owner` when set.
    public static func createPrivateDirectory(_ path: String, owner: RunAs? = nil) throws {
        guard mkdir(path, 0o700) == 0 else { throw LocalError("cannot create \(path): \(String(cString: strerror(errno)))") }
        if let owner, lchown(path, owner.uid, owner.gid) != 0 { throw LocalError("chown \(path): \(String(cString: strerror(errno)))") }
    }
}


/// Path arithmetic on strings, without the file system. NSString's `deletingLastPathComponent`
/// traps on one-character names such as "c" or "x/" in this Foundation, and a tar entry or a
/// `--catalog` argument can be exactly that.
public enum Paths {
    /// The directory holding `path`: "a/b" → "a", "/a" → "/", "c" → ".", "x/" → ".".
    public static func parent(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1, p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        var dir = p[..<slash]
        while dir.hasSuffix("/") { dir = dir.dropLast() }
        return dir.isEmpty ? "/" : String(dir)
    }
}

extension Paths {
    /// Where a symbolic link's `target` leads, as components below a root, when the link sits
    /// in the directory `directory` (components below the root). Links met on the way are
    /// followed through `linkTarget` (the target of a path below the root that is a link, nil
    /// for anything else); nil when the path leaves the root at any step (`..` above it, an
    /// absolute target) or follows more than 40 links (a loop, as the kernel's ELOOP).
    public static func resolve(_ target: String, in directory: [String], linkTarget: ([String]) -> String?) -> [String]? {
        // A NUL ends the path for the kernel where it does not end it here: never resolvable.
        guard !target.hasPrefix("/"), !target.contains("\u{0}") else { return nil }
        var stack = directory
        var pending = target.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        var followed = 0
        while !pending.isEmpty {
            let c = pending.removeFirst()
            if c == "." { continue }
            if c == ".." {
                guard !stack.isEmpty else { return nil }
                stack.removeLast()
                continue
            }
            stack.append(c)
            if let next = linkTarget(stack) {
                followed += 1
                guard followed <= 40, !next.hasPrefix("/"), !next.contains("\u{0}") else { return nil }
                stack.removeLast()
                pending = next.split(separator: "/", omittingEmptySubsequences: true).map(String.init) + pending
            }
        }
        return stack
    }

    /// `name`'s components with `.` dropped and `..` applied; nil when `..` climbs above the
    /// start or the name is absolute or empty (`resolve` from the top, with no links).
    public static func components(_ name: String) -> [String]? {
        guard !name.isEmpty else { return nil }
        return resolve(name, in: [], linkTarget: { _ in nil })
    }
}

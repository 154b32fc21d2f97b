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

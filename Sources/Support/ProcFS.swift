import Foundation

/// What Linux's /proc says about processes, read in one place.
public enum ProcFS {
    /// This executable's absolute path (/proc/self/exe), nil without /proc.
    public static func executablePath() -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buf, Int(PATH_MAX))
        guard n > 0 else { return nil }
        return String(cString: buf)
    }

    /// A process's command name (`comm`, at most 15 characters), nil when it is gone.
    public static func command(_ pid: pid_t) -> String? {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .newlines)
    }

    /// A process's working directory, nil when it is gone or not ours to read.
    public static func workingDirectory(_ pid: pid_t) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")
    }
}

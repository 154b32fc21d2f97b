import Foundation

/// What a restored data directory would make its server do if it were read: the backup's
/// `postgresql.auto.conf` (which PostgreSQL reads from the data directory whatever
/// `config_file` says, and which wins over it), a PostgreSQL 11 `recovery.conf`, and what a
/// drctl-started server is always told on its command line (which wins over every file).
public enum BackupConfiguration {
    /// Files PostgreSQL reads from the data directory itself, set aside before the first start.
    public static let dataDirectoryFiles = ["postgresql.auto.conf", "recovery.conf"]

    /// Settings that run a command or load code on the restore host, reach out of it, or write
    /// outside the data directory: the reason a backup's own configuration is never read.
    public static let dangerous: Set<String> = [
        "archive_mode", "archive_command", "archive_library", "restore_command", "archive_cleanup_command", "recovery_end_command",
        "shared_preload_libraries", "session_preload_libraries", "local_preload_libraries", "dynamic_library_path", "jit_provider",
        "ssl_passphrase_command", "listen_addresses", "port", "unix_socket_directories", "unix_socket_group", "unix_socket_permissions",
        "primary_conninfo", "primary_slot_name", "external_pid_file", "log_directory", "logging_collector", "data_directory",
        "hba_file", "ident_file", "config_file", "include", "include_if_exists", "include_dir",
    ]

    /// The setting names a configuration file sets, in order, without values (which may hold
    /// passwords, e.g. primary_conninfo). `include` directives are listed as such.
    public static func settingNames(_ text: String) -> [String] {
        var names: [String] = []
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.drop { $0 == " " || $0 == "\t" }
            guard let first = line.first, first != "#" else { continue }
            let name = line.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." }
            guard !name.isEmpty else { continue }
            let lower = name.lowercased()
            if !names.contains(lower) { names.append(lower) }
        }
        return names
    }

    /// What a restored server runs with, whatever any file of the backup says: no archiving, no
    /// library loaded, no replication connection out, loopback and drctl's socket only. drctl's
    /// configuration file holds them (for a kept directory started later), and the server drctl
    /// starts gets them on its command line too (`safetyOptions`), which PostgreSQL puts above
    /// postgresql.conf and postgresql.auto.conf. Settings exist from a major version on (an
    /// unknown name stops the server): archive_library from 15; the rest from 12, the oldest drctl
    /// restores.
    /// `preload`: the libraries the policy allows (`spec.drill.preloadLibraries`, names only, found
    /// in `$libdir`), none by default.
    public static func safetySettings(major: Int, port: Int, socketDirectory: String, hbaFile: String, identFile: String,
                                      restoreCommand: String?, preload: [String] = []) -> [(name: String, value: String)] {
        var settings: [(name: String, value: String)] = major >= 15 ? [("archive_library", "")] : []
        settings += [
            ("archive_mode", "off"), ("archive_command", ""), ("archive_cleanup_command", ""),
            ("recovery_end_command", ""), ("shared_preload_libraries", preload.joined(separator: ",")), ("session_preload_libraries", ""),
            ("local_preload_libraries", ""), ("dynamic_library_path", "$libdir"), ("jit", "off"), ("ssl", "off"),
            ("ssl_passphrase_command", ""), ("listen_addresses", "127.0.0.1"), ("port", String(port)),
            ("unix_socket_directories", socketDirectory), ("unix_socket_permissions", "0700"), ("hba_file", hbaFile),
            ("ident_file", identFile), ("primary_conninfo", ""), ("primary_slot_name", ""), ("external_pid_file", ""),
            ("logging_collector", "off"), ("max_wal_senders", "0"), ("hot_standby", "off"),
        ]
        if let restoreCommand { settings.append(("restore_command", restoreCommand)) }
        return settings
    }

    /// `safetySettings` as the server's command-line options.
    public static func safetyOptions(major: Int, port: Int, socketDirectory: String, hbaFile: String, identFile: String, restoreCommand: String?,
                                     preload: [String] = []) -> [String] {
        commandLine(safetySettings(major: major, port: port, socketDirectory: socketDirectory, hbaFile: hbaFile, identFile: identFile,
                                   restoreCommand: restoreCommand, preload: preload))
    }

    /// Settings as `postgres` options: `-c name=value` each.
    /// Replay tuned for what the restore is. Every restore: shared buffers sized to the host,
    /// restartpoints a quarter as often by WAL volume (max_wal_size, what the space check counts on) and by time once a day (checkpoint_timeout), WAL read
    /// ahead of replay (recovery_prefetch, 15+) with more concurrent I/O. A drill's data directory
    /// is deleted afterwards (`durable` false): nothing is flushed to disk on its way (fsync,
    /// full_page_writes, synchronous_commit off). A real restore keeps all three on.
    public static func replaySettings(major: Int, durable: Bool, sharedBuffersMB: Int) -> [(name: String, value: String)] {
        var s: [(name: String, value: String)] = [("shared_buffers", "\(sharedBuffersMB)MB"), ("max_wal_size", "\(ScratchSpace.walKept >> 20)MB"),
                                                  ("checkpoint_timeout", "1d"), ("maintenance_io_concurrency", "64")]
        if major >= 15 { s += [("recovery_prefetch", "on"), ("wal_decode_buffer_size", "4MB")] }
        if !durable { s += [("fsync", "off"), ("full_page_writes", "off"), ("synchronous_commit", "off")] }
        return s
    }

    /// A share of the memory this host has free for a restored server's shared buffers: an
    /// eighth of MemAvailable, from 128 MB to 2 GB (several drills may run at once).
    public static func sharedBuffersMB(memAvailableKB: Int?) -> Int {
        guard let kb = memAvailableKB else { return 128 }
        return min(2048, max(128, kb / 1024 / 8))
    }

    /// Memory free for this process, in kB: the host's MemAvailable (/proc/meminfo), no more
    /// than what the cgroup (a pod's limit) still allows.
    public static func memAvailableKB() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        let host = text.split(separator: "\n").first { $0.hasPrefix("MemAvailable:") }.flatMap { line in
            line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
        }
        func number(_ path: String) -> Int? { (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } }
        // cgroup v2: memory.max is "max" when unlimited (no number).
        if let limit = number("/sys/fs/cgroup/memory.max"), let used = number("/sys/fs/cgroup/memory.current") {
            return min(host ?? .max, max(0, limit - used) / 1024)
        }
        return host
    }

    public static func commandLine(_ settings: [(name: String, value: String)]) -> [String] {
        settings.flatMap { ["-c", "\($0.name)=\($0.value)"] }
    }
}

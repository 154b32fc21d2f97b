import Foundation

/// The C library's allocator, tuned for a process that runs many threads for a while (copies,
/// restores): glibc's malloc.h is not in the Glibc module, so the two calls are declared here.
public enum Memory {
    @_silgen_name("mallopt") private static func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
    @_silgen_name("malloc_trim") private static func mallocTrim(_ pad: Int) -> Int32
    /// M_ARENA_MAX in glibc's malloc.h.
    private static let arenaMax: Int32 = -8

    /// At most `arenas` malloc arenas (glibc's default is eight per core): worker threads then
    /// share arenas, and memory one freed is reused by another instead of each growing its own.
    public static func limitArenas(_ arenas: Int32 = 2) {
        _ = mallopt(arenaMax, arenas)
    }

    /// Freed memory handed back to the system (between phases that allocate a lot and free it).
    public static func trim() {
        _ = mallocTrim(0)
    }
}

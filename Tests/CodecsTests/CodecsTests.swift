import Foundation
import Paths
import Testing
import Codecs
import TestSupport

/// Streaming gzip and tar, against archives made by the real gzip(1) and GNU tar.
struct StreamCodecTests {
    func sh(_ script: String) throws -> String {
        let (st, out) = try run("/bin/sh", ["-c", script])
        #expect(st == 0, "\(script): \(out)")
        return out
    }

    /// Feeds `data` in random-sized chunks.
    func chunks(_ data: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        var i = 0
        var rng = SystemRandomNumberGenerator()
        while i < data.count {
            let n = min(data.count - i, Int.random(in: 1...70_000, using: &rng))
            try data[i..<i + n].withUnsafeBytes { try body($0) }
            i += n
        }
    }

    @Test func gzipStreamMatchesGzip() throws {
        let dir = tempPath("gz")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try sh("mkdir -p \(dir) && head -c 3000000 /dev/urandom > \(dir)/a && seq 1 200000 > \(dir)/b && gzip -c \(dir)/a > \(dir)/a.gz && gzip -c \(dir)/b > \(dir)/b.gz && cat \(dir)/a.gz \(dir)/b.gz > \(dir)/ab.gz")
        let expected = try Array(Data(contentsOf: URL(fileURLWithPath: "\(dir)/a"))) + Array(Data(contentsOf: URL(fileURLWithPath: "\(dir)/b")))
        let gz = try Array(Data(contentsOf: URL(fileURLWithPath: "\(dir)/ab.gz")))
        let s = try GzipStream()
        var out: [UInt8] = []
        try chunks(gz) { try s.feed($0) { out += $0 } }
        try s.finish()
        #expect(out == expected, "two concatenated members, decoded in order")

        let t = try GzipStream()
        try chunks(Array(gz.prefix(gz.count / 2))) { try t.feed($0) { _ in } }
        #expect(throws: DecompressionError.self) { try t.finish() }
        let bomb = try GzipStream(limit: 1_000_000)
        #expect(throws: DecompressionError.self) { try chunks(gz) { try bomb.feed($0) { _ in } } }
        var corrupt = gz
        corrupt[5000] ^= 0xFF
        let c = try GzipStream()
        #expect(throws: DecompressionError.self) {
            try chunks(corrupt) { try c.feed($0) { _ in } }
            try c.finish()
        }
    }

    @Test(arguments: ["gnu", "pax", "ustar"])
    func tarRoundTrip(format: String) throws {
        let dir = tempPath("tar-\(format)")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let long = String(repeating: "d", count: 60) + "/" + String(repeating: "f", count: 90)
        _ = try sh("""
            mkdir -p \(dir)/src/base/16384 \(dir)/src/pg_wal \(dir)/src/\((long as NSString).deletingLastPathComponent) && cd \(dir)/src &&
            head -c 1048577 /dev/urandom > base/16384/1259 && : > empty && printf 'x' > "\(long)" &&
            echo 'PG_VERSION 15' > PG_VERSION && ln -s base/16384 inside-link &&
            tar --format=\(format) -cf \(dir)/a.tar . && gzip -c \(dir)/a.tar > \(dir)/a.tar.gz
            """)
        let gz = try Array(Data(contentsOf: URL(fileURLWithPath: "\(dir)/a.tar.gz")))
        let gzip = try GzipStream()
        let tar = try TarExtractor(root: "\(dir)/out")
        try chunks(gz) { try gzip.feed($0) { try tar.feed($0) } }
        try gzip.finish()
        try tar.finish()
        let diff = try run("/usr/bin/diff", ["-r", "--no-dereference", "\(dir)/src", "\(dir)/out"])
        #expect(diff.0 == 0, "\(diff.1)")
        #expect(tar.files == 4)
    }

    @Test func hostileArchivesAreRefused() throws {
        let dir = tempPath("hostile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try sh("""
            mkdir -p \(dir)/w/sub && cd \(dir)/w && echo evil > evil && ln -s /etc sub/etc-link && ln -s ../../outside sub/up-link &&
            tar -cf \(dir)/dotdot.tar --transform='s,^evil$,../evil,' evil &&
            tar -cPf \(dir)/absolute.tar --transform='s,^evil$,/tmp/drctl-evil,' evil &&
            tar -cf \(dir)/abslink.tar sub/etc-link && tar -cf \(dir)/uplink.tar sub/up-link &&
            mkfifo fifo && tar -cf \(dir)/fifo.tar fifo
            """)
        for (name, expected) in [("dotdot", "leaves the target directory"), ("absolute", "absolute path"),
                                 ("abslink", "absolute path"), ("uplink", "leaves the target directory"), ("fifo", "not restored")] {
            let data = try Array(Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name).tar")))
            let tar = try TarExtractor(root: "\(dir)/out-\(name)")
            var message = ""
            do { try data.withUnsafeBytes { try tar.feed($0) } } catch { message = "\(error)" }
            #expect(message.contains(expected), "\(name): \(message)")
        }
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/evil") && !FileManager.default.fileExists(atPath: "/tmp/drctl-evil"))
    }

    /// Found by `drctl-fuzz tar`: Foundation's deletingLastPathComponent traps on a one-character
    /// name, and a link named "l" at the top of an archive reached it.
    @Test func oneCharacterNamesAtTheTopAreExtracted() throws {
        let dir = tempPath("onechar")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try sh("mkdir -p \(dir)/w/d && cd \(dir)/w && echo x > f && ln -s d l && tar -cf \(dir)/t.tar f d l")
        let data = try Array(Data(contentsOf: URL(fileURLWithPath: "\(dir)/t.tar")))
        let tar = try TarExtractor(root: "\(dir)/out")
        try data.withUnsafeBytes { try tar.feed($0) }
        try tar.finish()
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "\(dir)/out/l") == "d")
        #expect(FileManager.default.contents(atPath: "\(dir)/out/f") == Data("x\n".utf8))
    }

    /// Found by `drctl-fuzz tar`: a pax record whose length is shorter than its own "length "
    /// prefix made the record parser slice past its end.
    @Test func malformedPaxRecordsAreIgnoredNotFatal() throws {
        func header(_ name: String, type: Character, size: Int) -> [UInt8] {
            var h = [UInt8](repeating: 0, count: 512)
            func put(_ s: String, _ at: Int) { for (i, b) in s.utf8.enumerated() { h[at + i] = b } }
            put(name, 0); put("0000644", 100); put("0000000", 108); put("0000000", 116)
            put(String(format: "%011o", size), 124); put("00000000000", 136); put(String(type), 156); put("ustar\u{0}00", 257)
            put("        ", 148)
            put(String(format: "%06o", h.reduce(0) { $0 + Int($1) }) + "\u{0} ", 148)
            return h
        }
        let pax = Array("1 \n0 x\n3 a\n".utf8)
        var tar = header("./PaxHeader", type: "x", size: pax.count) + pax + [UInt8](repeating: 0, count: 512 - pax.count)
        tar += header("f", type: "0", size: 2) + Array("ok".utf8) + [UInt8](repeating: 0, count: 510) + [UInt8](repeating: 0, count: 1024)
        let dir = tempPath("pax")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let x = try TarExtractor(root: dir)
        try tar.withUnsafeBytes { try x.feed($0) }
        try x.finish()
        #expect(FileManager.default.contents(atPath: dir + "/f") == Data("ok".utf8))
    }

    @Test func parentPaths() {
        for (path, parent) in [("a/b", "a"), ("/a", "/"), ("/", "/"), ("c", "."), ("x/", "."), ("a/b/", "a"), ("a//b", "a"),
                               ("/x/y/z", "/x/y"), ("", "."), ("./c", ".")] {
            #expect(Paths.parent(path) == parent, "\(path)")
        }
    }

    @Test func truncatedTarIsAnError() throws {
        let dir = tempPath("trunc")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try sh("mkdir -p \(dir)/s && head -c 100000 /dev/urandom > \(dir)/s/f && tar -cf \(dir)/t.tar -C \(dir)/s f")
        let data = try Array(Data(contentsOf: URL(fileURLWithPath: "\(dir)/t.tar")))
        let tar = try TarExtractor(root: "\(dir)/out")
        try data.prefix(50_000).withUnsafeBytes { try tar.feed($0) }
        #expect(throws: TarError.self) { try tar.finish() }
    }
}

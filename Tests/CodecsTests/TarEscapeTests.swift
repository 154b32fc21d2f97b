import Foundation
import Paths
import Testing
import Codecs
import TestSupport

/// Archives built to escape the extraction root through links, as someone who can write to the
/// bucket would build them. Each is extracted into `P/a/b/root`; afterwards nothing may exist in
/// `P` but that chain of directories and what is under the root.
struct TarEscapeTests {
    final class Place {
        let parent = tempPath("escape")
        var root: String { parent + "/a/b/root" }
        init() throws {
            try FileManager.default.createDirectory(atPath: parent + "/a/b", withIntermediateDirectories: true)
            try "outside".write(toFile: parent + "/a/victim", atomically: true, encoding: .utf8)
        }
        deinit { try? FileManager.default.removeItem(atPath: parent) }

        /// Extracts `archive` (in pieces of `chunk` bytes); the error's text, or "" on success.
        func extract(_ archive: [UInt8], chunk: Int = 700) -> String {
            do {
                let x = try TarExtractor(root: root)
                var i = 0
                while i < archive.count {
                    let end = min(i + chunk, archive.count)
                    try archive[i..<end].withUnsafeBytes { try x.feed($0) }
                    i = end
                }
                try x.finish()
                return ""
            } catch {
                return "\(error)"
            }
        }

        /// Every path in the place outside the root, found without following links.
        func outsideRoot() -> [String] {
            var out: [String] = []
            func walk(_ dir: String) {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                    let path = dir + "/" + name
                    if path == root || path.hasPrefix(root + "/") { continue }
                    if ![parent + "/a", parent + "/a/b", parent + "/a/victim"].contains(path) { out.append(path) }
                    var st = stat()
                    if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { walk(path) }
                }
            }
            walk(parent)
            return out
        }

        var victimUntouched: Bool { (try? String(contentsOfFile: parent + "/a/victim", encoding: .utf8)) == "outside" }
    }

    static func tar(_ build: (inout TarBuilder) -> Void) -> [UInt8] {
        var t = TarBuilder()
        build(&t)
        return t.archive
    }

    /// The reproduction: each link passes a lexical check against its own parent; the
    /// second is created through the first and points above the root.
    @Test func chainedLinksDoNotLeadOut() throws {
        let p = try Place()
        let message = p.extract(Self.tar {
            $0.add("d/", .directory)
            $0.add("d/up", .symlink(".."))
            $0.add("d/up/x", .symlink(".."))
            $0.file("x/ANY", "escaped")
        })
        #expect(message.contains("goes through the link d/up"), "\(message)")
        #expect(p.outsideRoot().isEmpty, "\(p.outsideRoot())")
    }

    /// Links whose targets climb through other links, several levels, never entering a link as
    /// an entry's path: each is lexically inside, together they lead three levels above the root.
    @Test func linkLaddersAreRefusedBeforeAnyLinkExists() throws {
        for order in [["x1", "x2", "x3", "x4"], ["x4", "x3", "x2", "x1"]] {
            let p = try Place()
            let targets = ["x1": ".", "x2": "x1/..", "x3": "x2/..", "x4": "x3/.."]
            let message = p.extract(Self.tar { t in
                t.file("keep", "data")
                for name in order { t.add(name, .symlink(targets[name]!)) }
            })
            #expect(message.contains("leads outside the target directory"), "\(order): \(message)")
            for name in order { #expect(access(p.root + "/" + name, F_OK) != 0 && !FileManager.default.fileExists(atPath: p.root + "/" + name)) }
            #expect(p.outsideRoot().isEmpty)
        }
        // Loops are refused too (the kernel would say ELOOP).
        let p = try Place()
        let message = p.extract(Self.tar { $0.add("a", .symlink("b")); $0.add("b", .symlink("a/x")) })
        #expect(message.contains("leads outside"), "\(message)")
    }

    /// A link to an absolute directory, then files through it; a relative link out of the root.
    @Test func linksOutAreRefused() throws {
        for (link, target) in [("etc", "/etc"), ("etc", ""), ("sub/out", "../../victim"), ("sub/out", "../..")] {
            let p = try Place()
            let message = p.extract(Self.tar {
                $0.add("sub/", .directory)
                $0.add(link, .symlink(target))
                $0.file(link + "/passwd", "root::0:0::/:/bin/sh")
            })
            #expect(message.contains("refused"), "\(link) -> \(target): \(message)")
            #expect(p.outsideRoot().isEmpty && p.victimUntouched)
        }
    }

    /// Hard links are never made: not to a file outside, not to a link, not to a file inside.
    @Test func hardLinksAreRefused() throws {
        for target in ["/etc/passwd", "../../victim", "l", "f"] {
            let p = try Place()
            let message = p.extract(Self.tar {
                $0.file("f", "inside")
                $0.add("l", .symlink("f"))
                $0.add("h", .hardlink(target))
            })
            #expect(message.contains("is a hard link"), "\(target): \(message)")
            #expect(p.outsideRoot().isEmpty && p.victimUntouched)
        }
    }

    /// A file with the name of a link: of the archive (before or after it), or one already on disk
    /// pointing out. Neither replaces the link nor writes through it.
    @Test func aFileNeverReplacesOrWritesThroughALink() throws {
        var p = try Place()
        var message = p.extract(Self.tar { $0.add("l", .symlink("d")); $0.add("d/", .directory); $0.file("l", "x") })
        #expect(message.contains("has the name of a link"), "\(message)")

        p = try Place()
        message = p.extract(Self.tar { $0.file("f", "x"); $0.add("f", .symlink("../../victim")) })
        #expect(message.contains("refused") || message.contains("File exists"), "\(message)")

        p = try Place()
        message = p.extract(Self.tar { $0.file("f", "x"); $0.add("f", .symlink("g")); $0.file("g", "y") })
        #expect(message.contains("File exists"), "\(message)")

        // Already on disk (an earlier archive, or planted): a link out of the root.
        p = try Place()
        try FileManager.default.createDirectory(atPath: p.root, withIntermediateDirectories: true)
        #expect(symlink("../../a/victim", p.root + "/pre") == 0)
        #expect(symlink("../..", p.root + "/dir") == 0)
        message = p.extract(Self.tar { $0.file("pre", "overwritten") })
        #expect(message.contains("File exists"), "\(message)")
        message = p.extract(Self.tar { $0.file("dir/victim", "overwritten") })
        #expect(message.contains("dir is a symbolic link: refused"), "\(message)")
        message = p.extract(Self.tar { $0.add("up", .symlink("dir/..")) })
        #expect(message.contains("leads outside"), "a new link through one already on disk: \(message)")
        #expect(p.victimUntouched)
        #expect(p.outsideRoot().isEmpty)
    }

    /// What a real archive needs still works: links inside, to files and directories, created
    /// after the files; a link's own directory created as needed.
    @Test func linksInsideAreRestored() throws {
        let p = try Place()
        let message = p.extract(Self.tar {
            $0.add("cfg", .symlink("conf/main.conf"))
            $0.add("deep/er/wal", .symlink("../../pg_wal"))
            $0.file("conf/main.conf", "x = 1")
            $0.add("pg_wal/", .directory)
            $0.add("self", .symlink("."))
        })
        #expect(message == "")
        #expect(try String(contentsOfFile: p.root + "/cfg", encoding: .utf8) == "x = 1")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: p.root + "/deep/er/wal") == "../../pg_wal")
        #expect(p.outsideRoot().isEmpty)
    }

    /// A pax name may hold a NUL: the kernel would stop at it and read "..\0" as "..".
    @Test func namesWithANulAreRefused() throws {
        var p = try Place()
        var message = p.extract(Self.tar {
            $0.pax([("path", "..\u{0}/..\u{0}/PWNED")])
            $0.file("placeholder", "escaped")
        })
        #expect(message.contains("control character"), "\(message)")
        #expect(p.outsideRoot().isEmpty, "\(p.outsideRoot())")
        p = try Place()
        message = p.extract(Self.tar {
            $0.pax([("linkpath", "..\u{0}")])
            $0.add("up1", .symlink("x"))
            $0.pax([("linkpath", "up1/..\u{0}")])
            $0.add("up2", .symlink("x"))
            $0.add("esc", .symlink("up2/a"))
        })
        #expect(message.contains("control character"), "\(message)")
        #expect(p.outsideRoot().isEmpty && !FileManager.default.fileExists(atPath: p.root + "/up1"))
        #expect(Paths.components("..\u{0}/x") == nil && Paths.resolve("..\u{0}", in: [], linkTarget: { _ in nil }) == nil)
    }

    @Test func resolution() {
        let links = ["up": ".", "d/l": "../up", "loop": "loop"]
        func r(_ t: String, _ dir: [String] = []) -> String? {
            Paths.resolve(t, in: dir) { links[$0.joined(separator: "/")] }.map { $0.joined(separator: "/") }
        }
        #expect(r("a/b/../c") == "a/c")
        #expect(r("..") == nil)
        #expect(r("..", ["d"]) == "")
        #expect(r("up/..") == nil, "up is the root itself")
        #expect(r("d/l/x") == "x")
        #expect(r("d/l/..") == nil)
        #expect(r("loop") == nil)
        #expect(r("/etc") == nil)
        #expect(Paths.components("./a//b/../c") == ["a", "c"] && Paths.components("../x") == nil && Paths.components("/x") == nil)
    }
}

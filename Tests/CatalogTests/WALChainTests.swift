import Foundation
import Testing
@testable import Catalog
import Layout

struct WALChainTests {
    static let size: UInt64 = 16 << 20

    static func archive(_ names: [String], histories: [UInt32: String] = [:]) throws -> WALArchive {
        var a = WALArchive()
        for (i, n) in names.enumerated() {
            a.segments[WALSegment(name: n)!] = .init(key: n, size: 1, lastModified: Date(timeIntervalSince1970: Double(i)))
        }
        for (tli, text) in histories { a.histories[tli] = try TimelineHistory(timeline: tli, parsing: text) }
        return a
    }

    static func seg(_ s: String) -> WALSegment { WALSegment(name: s)! }

    @Test func unbrokenChain() throws {
        let a = try Self.archive((4...9).map { String(format: "0000000100000000000000%02X", $0) })
        let r = WALChain.analyze(begin: Self.seg("000000010000000000000004"), end: Self.seg("000000010000000000000004"), archive: a, segmentSize: Self.size)
        #expect(r.end == Self.seg("000000010000000000000009"))
        #expect(r.gaps.isEmpty && r.consistent && r.timelines == [1])
        #expect(r.endObjectTime == Date(timeIntervalSince1970: 5))
    }

    @Test func missingSegmentBreaksTheChain() throws {
        let names = [4, 5, 7, 8, 10].map { String(format: "0000000100000000000000%02X", $0) }
        let r = WALChain.analyze(begin: Self.seg("000000010000000000000004"), end: Self.seg("000000010000000000000005"),
                                 archive: try Self.archive(names), segmentSize: Self.size)
        #expect(r.end == Self.seg("000000010000000000000005"))
        #expect(r.gaps == [Self.seg("000000010000000000000006")...Self.seg("000000010000000000000006"),
                           Self.seg("000000010000000000000009")...Self.seg("000000010000000000000009")])
        #expect(r.consistent)
    }

    @Test func missingBeginMeansNotRestorable() throws {
        let r = WALChain.analyze(begin: Self.seg("000000010000000000000004"), end: Self.seg("000000010000000000000004"),
                                 archive: try Self.archive(["000000010000000000000005"]), segmentSize: Self.size)
        #expect(r.end == nil && !r.consistent)
        #expect(r.gaps == [Self.seg("000000010000000000000004")...Self.seg("000000010000000000000004")])
    }

    @Test func followsATimelineSwitch() throws {
        // TL1 up to C, the switch inside D (TL2's D holds TL1's WAL up to 0/D00B0B0), TL2 onwards.
        var names = (4...0xC).map { String(format: "0000000100000000000000%02X", $0) }
        names += ["00000002000000000000000D", "00000002000000000000000E", "00000002000000000000000F"]
        let a = try Self.archive(names, histories: [2: "1\t0/D00B0B0\tno recovery target specified\n"])
        let r = WALChain.analyze(begin: Self.seg("000000010000000000000004"), end: Self.seg("000000010000000000000004"), archive: a, segmentSize: Self.size)
        #expect(r.timelines == [1, 2])
        #expect(r.end == Self.seg("00000002000000000000000F"))
        #expect(r.gaps.isEmpty, "a timeline switch is not a gap: \(r.gaps)")
    }

    @Test func aGapOnTheNewTimelineIsReported() throws {
        var names = (4...0xC).map { String(format: "0000000100000000000000%02X", $0) }
        names += ["00000002000000000000000D", "00000002000000000000000F"]
        let a = try Self.archive(names, histories: [2: "1\t0/D00B0B0\tno recovery target specified\n"])
        let r = WALChain.analyze(begin: Self.seg("000000010000000000000004"), end: nil, archive: a, segmentSize: Self.size)
        #expect(r.end == Self.seg("00000002000000000000000D"))
        #expect(r.gaps == [Self.seg("00000002000000000000000E")...Self.seg("00000002000000000000000E")])
    }

    @Test func withoutItsHistoryANewTimelineIsNotFollowed() throws {
        let names = ["000000010000000000000004", "000000010000000000000005", "000000020000000000000006"]
        let r = WALChain.analyze(begin: Self.seg("000000010000000000000004"), end: nil, archive: try Self.archive(names), segmentSize: Self.size)
        #expect(r.timelines == [1] && r.end == Self.seg("000000010000000000000005") && r.gaps.isEmpty)
    }

    @Test func crossesALogBoundary() throws {
        let names = ["0000000100000000000000FE", "0000000100000000000000FF", "000000010000000100000000", "000000010000000100000001"]
        let r = WALChain.analyze(begin: Self.seg("0000000100000000000000FE"), end: nil, archive: try Self.archive(names), segmentSize: Self.size)
        #expect(r.end == Self.seg("000000010000000100000001") && r.gaps.isEmpty)
    }
}


struct WALCoverageTests {
    func at(_ s: Double) -> Date { Date(timeIntervalSince1970: s) }

    @Test func anUnbrokenArchiveIsOneSpan() throws {
        let a = try WALChainTests.archive((4...9).map { String(format: "0000000100000000000000%02X", $0) })
        #expect(WALChain.coverage(a, segmentSize: WALChainTests.size) == [WALCoverageSpan(from: at(0), to: at(5))])
        #expect(WALChain.coverage(WALArchive(), segmentSize: WALChainTests.size).isEmpty)
    }

    @Test func aMissingSegmentIsAGapNamingIt() throws {
        let a = try WALChainTests.archive([4, 5, 8, 9].map { String(format: "0000000100000000000000%02X", $0) })
        #expect(WALChain.coverage(a, segmentSize: WALChainTests.size) == [
            WALCoverageSpan(from: at(0), to: at(1)),
            WALCoverageSpan(from: at(1), to: at(2), missing: "000000010000000000000006"),
            WALCoverageSpan(from: at(2), to: at(3)),
        ])
    }

    @Test func aTimelineSwitchIsNotAGapAndALogBoundaryIsCrossed() throws {
        let a = try WALChainTests.archive(["000000010000000000000004", "000000010000000000000005", "000000020000000000000005",
                                           "000000020000000000000006", "000000020000000000000008"])
        #expect(WALChain.coverage(a, segmentSize: WALChainTests.size) == [
            WALCoverageSpan(from: at(0), to: at(3)),
            WALCoverageSpan(from: at(3), to: at(4), missing: "000000020000000000000007"),
            WALCoverageSpan(from: at(4), to: at(4)),
        ])
        let b = try WALChainTests.archive(["0000000100000000000000FE", "0000000100000000000000FF", "000000010000000100000000"])
        #expect(WALChain.coverage(b, segmentSize: WALChainTests.size) == [WALCoverageSpan(from: at(0), to: at(2))])
    }
}

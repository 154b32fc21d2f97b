/// A `<TL>.history` file: one line per ancestor timeline, `<parent TLI>\t<switch LSN>\t<reason>`.
public struct TimelineHistory: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var parent: UInt32
        /// Where this timeline branched off `parent`: WAL before it belongs to the parent.
        public var switchLSN: LSN
        public var reason: String
    }

    public var timeline: UInt32
    public var entries: [Entry]

    public init(timeline: UInt32, parsing text: String) throws {
        self.timeline = timeline
        var entries: [Entry] = []
        for (n, raw) in text.split(separator: "\n").enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let f = line.split(separator: "\t", maxSplits: 2)
            guard f.count >= 2, let parent = UInt32(f[0].trimmingCharacters(in: .whitespaces)),
                  let lsn = LSN(parsing: f[1].trimmingCharacters(in: .whitespaces)) else {
                throw BackupInfoError(description: "\(timeline) history line \(n + 1): expected '<timeline>\\t<LSN>\\t<reason>'")
            }
            entries.append(Entry(parent: parent, switchLSN: lsn, reason: f.count > 2 ? String(f[2]) : ""))
        }
        self.entries = entries
    }
}

import Foundation

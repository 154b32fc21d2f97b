import ArgumentParser
import Foundation
import Support

/// The encoder behind every command's `-o json`: sorted keys, RFC 3339 times, readable.
func prettyJSONEncoder() -> JSONEncoder {
    JSONCoding.encoder(precise: false)
}

func printJSON(_ value: some Encodable) throws {
    print(String(decoding: try prettyJSONEncoder().encode(value), as: UTF8.self))
}

/// Output format for commands that list things.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

/// Left-aligned columns, two spaces apart.
func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    var widths = Array(repeating: 0, count: first.count)
    for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
    for r in rows {
        print(r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  "))
    }
}

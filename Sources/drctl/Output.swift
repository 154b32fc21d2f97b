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
    if !rows.isEmpty { print(TextTable.render(rows)) }
}

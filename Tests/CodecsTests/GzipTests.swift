import Foundation
import Testing
import Codecs
import TestSupport

struct GzipTests {
    @Test func roundTripsThroughTheGzipTool() throws {
        let text = "1\t0/D00B0B0\tno recovery target specified\n"
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("drctl-gz-\(UUID().uuidString)").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        try #require(try run("/bin/gzip", ["-n", path], timeout: 30).0 == 0)
        let gz = try Array(Data(contentsOf: URL(fileURLWithPath: path + ".gz")))
        try? FileManager.default.removeItem(atPath: path + ".gz")
        #expect(String(decoding: try Gzip.decompress(gz, limit: 1024), as: UTF8.self) == text)
        #expect(throws: DecompressionError.self) { try Gzip.decompress(Array(gz.dropLast(12)), limit: 1024) }
        #expect(throws: DecompressionError.self) { try Gzip.decompress(gz, limit: 10) }
        #expect(throws: DecompressionError.self) { try Gzip.decompress(Array("not gzip at all".utf8), limit: 1024) }
    }
}

import Foundation
import Testing
import Support

struct RFC3339Tests {
    @Test func iso8601Timestamps() {
        #expect(RFC3339.parse("2026-11-27T05:31:57Z") == Date(timeIntervalSince1970: 1_795_757_517))
        #expect(RFC3339.parse("2026-11-27T05:31:57.5Z") == Date(timeIntervalSince1970: 1_795_757_517.5))
        #expect(RFC3339.parse("garbage") == nil)
        // One codec for S3, Kubernetes, PostgreSQL and evidence: an offset is read, not refused.
        #expect(RFC3339.parse("2026-11-27T05:31:57+01:00") == Date(timeIntervalSince1970: 1_795_757_517 - 3600))
        #expect(RFC3339.parse("2026-11-27 05:31:57.123456") == Date(timeIntervalSince1970: 1_795_757_517.123456))
    }

    @Test func httpDates() {
        #expect(HTTPDate.parse("Fri, 27 Nov 2026 05:31:57 GMT") == Date(timeIntervalSince1970: 1_795_757_517))
        #expect(HTTPDate.parse("Thu, 01 Jan 1970 00:00:00 GMT") == Date(timeIntervalSince1970: 0))
        for bad in ["", "garbage", "Fri, 27 Nov 2026 05:31:57 UTC", "Fri, 32 Nov 2026 05:31:57 GMT", "Fri, 27 Foo 2026 05:31:57 GMT",
                    "Fri, 27 Nov 2026 25:31:57 GMT", "Fri, 27 Nov 2026 05:31 GMT", "<\u{B5}>\n\u{A5}\u{A5}"] {
            #expect(HTTPDate.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func formatsRoundTrip() {
        let d = Date(timeIntervalSince1970: 1_795_757_517.123456)
        #expect(RFC3339.format(d) == "2026-11-27T05:31:57.123456Z")
        #expect(RFC3339.formatSeconds(d) == "2026-11-27T05:31:57Z")
        #expect(RFC3339.formatReadable(d) == "2026-11-27 05:31:57")
        #expect(RFC3339.parse(RFC3339.format(d)).map { abs($0.timeIntervalSince(d)) < 1e-6 } == true)
    }

    @Test func bucketJSONReadsWhatItWritesAndRefusesBadTimes() throws {
        struct T: Codable, Equatable { var at: Date }
        let t = T(at: Date(timeIntervalSince1970: 1_795_757_517.5))
        #expect(try JSONCoding.decoder().decode(T.self, from: JSONCoding.encoder().encode(t)) == t)
        #expect(throws: DecodingError.self) { try JSONCoding.decoder().decode(T.self, from: Data(#"{"at":"2026-13-45T99:00:00Z"}"#.utf8)) }
    }
}

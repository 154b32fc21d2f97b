import Foundation
import Testing
@testable import Catalog
@testable import Serve

@Suite struct MetricsTextTests {
    @Test func placeholder() { #expect(MetricsText.escape("a\"b") == "a\\\"b") }
}

import Foundation
import Testing
@testable import Kube

struct ApplyPatchBodyTests {
    /// What a YAML 1.1 reader refuses must not be in the body, and the body is still the same JSON.
    @Test func slashesAndControlCharactersAreWrittenSoYAMLReadsThem() throws {
        let object: [String: Any] = [
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": ["name": "x", "labels": ["app.kubernetes.io/name": "drctl"],
                         "annotations": ["url": "https://example.org/a/b", "odd": "del\u{7F} c1\u{9F} nel\u{85} bom\u{FEFF} fffe\u{FFFE} smile\u{1F600} tab\t"]],
        ]
        let body = try ApplyPatchBody.encode(object)
        let text = String(decoding: body, as: UTF8.self)
        #expect(!text.contains("\\/"), "\(text)")
        #expect(text.contains("app.kubernetes.io/name") && text.contains("https://example.org/a/b"))
        #expect(text.contains("del\\u007f") && text.contains("c1\\u009f") && text.contains("bom\\ufeff") && text.contains("fffe\\ufffe"), "\(text)")
        // NEL and characters beyond the BMP are printable to YAML: raw, never as surrogate escapes
        // (go-yaml refuses \\ud83d).
        #expect(text.contains("nel\u{85}") && text.contains("smile\u{1F600}"), "\(text)")
        #expect(text.unicodeScalars.allSatisfy(ApplyPatchBody.printable))
        let back = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        #expect(NSDictionary(dictionary: back).isEqual(to: object))
    }
}

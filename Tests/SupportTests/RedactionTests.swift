import Foundation
import Testing
import Support

struct RedactionTests {
    @Test func redactorRemovesSecretsAndSignatures() {
        let r = Redactor(secrets: ["s3cr3t/key+x"])
        let text = "bad s3cr3t/key+x and s3cr3t%2Fkey%2Bx and ?X-Amz-Signature=abcdef&x=1 Signature=123abc, ok"
        let out = r.redact(text)
        #expect(!out.contains("s3cr3t") && !out.contains("abcdef") && !out.contains("123abc"))
        #expect(out.contains("x=1") && out.contains("ok"))
    }
}

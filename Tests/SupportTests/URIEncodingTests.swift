import Foundation
import Testing
import Support

struct URIEncodingTests {
    @Test func encodesEverythingButUnreserved() {
        #expect(URIEncoding.encode("a b+c=&%~!'()*") == "a%20b%2Bc%3D%26%25~%21%27%28%29%2A")
        #expect(URIEncoding.encode("dir//x/./y/", keepSlash: true) == "dir//x/./y/")
        #expect(URIEncoding.encode("a/b") == "a%2Fb")
        #expect(URIEncoding.encode("ሴ") == "%E1%88%B4")
    }

    @Test func decodeIsTheInverse() {
        for s in ["a b+c=&%~!'()*", "ሴ/日本語", "%41 literal", ""] {
            #expect(URIEncoding.decode(URIEncoding.encode(s)) == s)
        }
        #expect(URIEncoding.decode("a+b", plusAsSpace: true) == "a b")
        #expect(URIEncoding.decode("a%2Bb", plusAsSpace: true) == "a+b")
        #expect(URIEncoding.decode("bad%zzescape%") == "bad%zzescape%")
    }
}

import Testing
import Hashing

struct DigestTests {
    @Test func digestsMatchKnownValues() {
        #expect(Hash.md5(Array("".utf8)).hex == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(Hash.sha256(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Array("hello".utf8).base64 == "aGVsbG8=")
        #expect(Array("hi".utf8).base64 == "aGk=")
    }
}

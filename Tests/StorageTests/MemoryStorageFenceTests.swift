import Foundation
import Testing
import Storage
import Support

/// A `drctl serve` leader that lost its lease closes the process fence before its cleanup runs:
/// from then on no driver writes or deletes, so a stalled job cannot act after the lease ended.
struct FenceTests {
    @Test func aClosedFenceStopsEveryWriteAndDeletion() throws {
        let s = MemoryStorage(["a": [1]])
        let fence = Fence()
        s.fence = fence
        try s.put("b", bytes: [2])
        fence.close("this replica lost its lease")
        #expect(throws: LocalError.self) { try s.put("c", bytes: [3]) }
        #expect(throws: LocalError.self) { try s.delete(["a"]) }
        #expect(s.keys == ["a", "b"], "nothing changed after the fence closed")
        #expect(try s.read("a") == [1], "reading goes on")
        do { try s.put("c", bytes: [3]) } catch { #expect("\(error)".contains("lost its lease")) }
    }
}

import Foundation
import Hashing

/// One key drctl seals its records with: an id (named in every record it seals, so several keys
/// can verify while one signs) and 32 random bytes.
public struct RecordKey: Sendable, Equatable {
    public let id: String
    let secret: [UInt8]

    public init(id: String, secret: [UInt8]) {
        self.id = id
        self.secret = secret
    }
}

public struct RecordKeyError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The keys of a key file: every one verifies, the last one signs. Rotation is adding a line
/// (`drctl keys create`): records sealed with an older key still verify until its line is
/// removed. A key file is a secret: its bytes never appear in a message.
public struct RecordKeyring: Sendable {
    public let keys: [RecordKey]
    /// Where the keys came from (for messages), or why none could be read.
    public let origin: String
    /// Set when a key file was named but could not be read: nothing is signed, nothing verifies.
    public let problem: String?

    public init(keys: [RecordKey], origin: String = "given keys", problem: String? = nil) {
        self.keys = keys
        self.origin = origin
        self.problem = problem
    }

    public static let none = RecordKeyring(keys: [], origin: "no record key")

    /// The key new records are sealed with.
    public var signing: RecordKey? { problem == nil ? keys.last : nil }

    func key(id: String) -> RecordKey? { problem == nil ? keys.first { $0.id == id } : nil }

    /// Why nothing can be signed, in one line, or nil when a key signs.
    public var cannotSign: String? {
        if let problem { return problem }
        return keys.isEmpty ? "no record key (create one with drctl keys create, then set DRCTL_RECORD_KEY_FILE or mount Secret drctl-record-key)" : nil
    }

    static let tag = "drctl-record-key"

    /// A key file's text: lines `drctl-record-key <id> <64 hex digits>`; `#` comments and blank
    /// lines ignored.
    public static func parse(_ text: String, origin: String) throws -> RecordKeyring {
        var keys: [RecordKey] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            // The secret is never quoted back: only the line number says what is wrong.
            guard f.count == 3, f[0] == tag, let secret = hexBytes(f[2]), secret.count == 32 else {
                throw RecordKeyError("\(origin):\(n + 1): not a record key line ('\(tag) ID HEX', 32 bytes as 64 hex digits)")
            }
            let id = String(f[1])
            guard id.utf8.count <= 64, id.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                throw RecordKeyError("\(origin):\(n + 1): key id '\(id)' is not 1–64 letters, digits, '-', '_' or '.'")
            }
            guard !keys.contains(where: { $0.id == id }) else { throw RecordKeyError("\(origin):\(n + 1): key id '\(id)' appears twice") }
            keys.append(RecordKey(id: id, secret: secret))
        }
        guard !keys.isEmpty else { throw RecordKeyError("\(origin): no record key in it") }
        return RecordKeyring(keys: keys, origin: origin)
    }

    /// A new key line, with an id from the date and 4 random bytes.
    public static func newKeyLine(now: Date) -> (id: String, line: String) {
        var g = SystemRandomNumberGenerator()
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }
        let day = ISO8601DateFormatter.string(from: now, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate])
        let id = "k\(day.replacingOccurrences(of: "-", with: ""))-\((0..<4).map { _ in UInt8.random(in: 0...255, using: &g) }.hex)"
        return (id, "\(tag) \(id) \(secret.hex)")
    }

    static func hexBytes<S: StringProtocol>(_ s: S) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

extension RecordKeyring {
    /// Where deploy/ mounts Secret drctl-record-key.
    public static let defaultFile = "/etc/drctl/record-key/keys"

    /// The keys of `DRCTL_RECORD_KEY_FILE`, else of `defaultFile` when it exists, else none. A
    /// file that is named and cannot be read gives a keyring that neither signs nor verifies,
    /// with the reason (drctl still reads and restores; it deletes nothing).
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> RecordKeyring {
        let named = env["DRCTL_RECORD_KEY_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        let path = named ?? defaultFile
        guard named != nil || FileManager.default.fileExists(atPath: path) else { return .none }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            return RecordKeyring(keys: [], origin: path, problem: "the record key file \(path) cannot be read")
        }
        do {
            return try parse(text, origin: path)
        } catch {
            return RecordKeyring(keys: [], origin: path, problem: "\(error)")
        }
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var loaded: RecordKeyring?

    /// This process's keys: read once from the environment (`fromEnvironment`), or set by a test.
    public static var current: RecordKeyring {
        get { lock.withLock { if loaded == nil { loaded = fromEnvironment() }; return loaded! } }
        set { lock.withLock { loaded = newValue } }
    }
}

import Support
import Yams

/// A YAML node with where it came from. Typed getters report problems (wrong type, missing
/// or unknown fields, with a suggestion for misspellings) into `Diagnostics` instead of
/// stopping at the first, so `drctl lint` can show every problem at once.
public struct YNode {
    public let node: Node
    public let file: String
    let diags: Diagnostics

    public var location: SourceLocation {
        SourceLocation(file: file, line: node.mark?.line ?? 1, column: node.mark?.column ?? 1)
    }

    func error(_ message: String) { diags.error(location, message) }

    public var string: String? {
        guard case .scalar(let s) = node else { return nil }
        return s.string
    }

    public var isNull: Bool {
        if case .scalar(let s) = node { return s.tag == .implicit && (s.string == "null" || s.string == "~" || s.string.isEmpty) && s.style == .plain }
        return false
    }

    /// Fields of a mapping; nil (with an error) when the node is something else.
    func fields(_ what: String) -> Fields? {
        guard case .mapping(let m) = node else {
            error("\(what) must be a mapping")
            return nil
        }
        return Fields(mapping: m, owner: self, what: what)
    }

    func items(_ what: String) -> [YNode]? {
        guard case .sequence(let s) = node else {
            error("\(what) must be a list")
            return nil
        }
        return s.map { YNode(node: $0, file: file, diags: diags) }
    }
}

/// The keys of one mapping. Every key read is remembered; `finish()` reports the rest as
/// unknown fields.
final class Fields {
    let owner: YNode
    let what: String
    private var entries: [(key: String, keyNode: YNode, value: YNode)] = []
    private var used = Set<String>()
    private var missing: [String] = []

    init(mapping: Node.Mapping, owner: YNode, what: String) {
        self.owner = owner
        self.what = what
        var seen = Set<String>()
        for (k, v) in mapping {
            let key = YNode(node: k, file: owner.file, diags: owner.diags)
            let name = key.string ?? ""
            if !seen.insert(name).inserted { key.error("duplicate field '\(name)' in \(what)") }
            entries.append((name, key, YNode(node: v, file: owner.file, diags: owner.diags)))
        }
    }

    var location: SourceLocation { owner.location }

    func node(_ key: String) -> YNode? {
        used.insert(key)
        return entries.first { $0.key == key }?.value
    }

    func keyLocation(_ key: String) -> SourceLocation? { entries.first { $0.key == key }?.keyNode.location }

    func has(_ key: String) -> Bool { entries.contains { $0.key == key } }

    /// A required field; when absent, reported by `finish` (unless a misspelling of it was
    /// found, which is reported instead).
    func required(_ key: String) -> YNode? {
        guard let n = node(key), !n.isNull else {
            if !missing.contains(key) { missing.append(key) }
            return nil
        }
        return n
    }

    func string(_ key: String, required isRequired: Bool = false) -> Located<String>? {
        guard let n = isRequired ? required(key) : node(key), !n.isNull else { return nil }
        guard let s = n.string, !s.isEmpty else {
            n.error("\(what).\(key) must be a non-empty string")
            return nil
        }
        return Located(s, n.location)
    }

    func bool(_ key: String) -> Bool? {
        guard let n = node(key), !n.isNull else { return nil }
        guard let s = n.string, let b = Bool(s) else {
            n.error("\(what).\(key) must be true or false")
            return nil
        }
        return b
    }

    func int(_ key: String, range: ClosedRange<Int>) -> Int? {
        guard let n = node(key), !n.isNull else { return nil }
        guard let s = n.string, let i = Int(s), range.contains(i) else {
            n.error("\(what).\(key) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        return i
    }

    func strings(_ key: String) -> [Located<String>]? {
        guard let n = node(key), !n.isNull else { return nil }
        guard let items = n.items("\(what).\(key)") else { return nil }
        return items.compactMap { item in
            guard let s = item.string, !s.isEmpty else { item.error("\(what).\(key) entries must be strings"); return nil }
            return Located(s, item.location)
        }
    }

    func duration(_ key: String, required isRequired: Bool = false) -> Located<TimeSpan>? {
        guard let s = string(key, required: isRequired) else { return nil }
        guard let d = TimeSpan(dialect: .policy, s.value) else {
            owner.diags.error(s.location, "\(what).\(key): '\(s.value)' is not a duration (examples: 30m, 24h, 7d, 4w, 12mo)")
            return nil
        }
        return Located(d, s.location)
    }

    func oneOf(_ key: String, _ allowed: [String], required isRequired: Bool = false) -> Located<String>? {
        guard let s = string(key, required: isRequired) else { return nil }
        guard allowed.contains(s.value) else {
            owner.diags.error(s.location, "\(what).\(key): '\(s.value)' is not one of \(allowed.joined(separator: ", "))")
            return nil
        }
        return s
    }

    /// Reports every key that was never read as unknown, suggesting the closest known one,
    /// and every missing required key that no misspelling accounts for.
    func finish(known: [String]) {
        var suggested = Set<String>()
        for e in entries where !used.contains(e.key) {
            var msg = "unknown field '\(e.key)' in \(what)"
            if let s = closest(e.key, among: known) {
                msg += " (did you mean '\(s)'?)"
                suggested.insert(s)
            }
            owner.diags.error(e.keyNode.location, msg)
        }
        for key in missing where !suggested.contains(key) {
            owner.error("\(what): missing required field '\(key)'")
        }
    }
}

/// A value and where it was written.
public struct Located<T: Sendable>: Sendable {
    public var value: T
    public var location: SourceLocation
    public init(_ value: T, _ location: SourceLocation) {
        self.value = value
        self.location = location
    }
}

extension Located: Equatable where T: Equatable {}

/// The known name nearest to `word` by edit distance, if it is near enough to be a typo.
func closest(_ word: String, among names: [String]) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        var prev = Array(0...b.count)
        for (i, ca) in a.enumerated() {
            var cur = [i + 1] + Array(repeating: 0, count: b.count)
            for (j, cb) in b.enumerated() {
                cur[j + 1] = min(prev[j + 1] + 1, cur[j] + 1, prev[j] + (ca == cb ? 0 : 1))
            }
            prev = cur
        }
        return prev[b.count]
    }
    let w = Array(word.lowercased())
    let best = names.map { ($0, distance(w, Array($0.lowercased()))) }.min { $0.1 < $1.1 }
    guard let best, best.1 <= max(2, word.count / 3) else { return nil }
    return best.0
}

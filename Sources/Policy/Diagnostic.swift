/// A place in a policy file.
public struct SourceLocation: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
    }
}

/// One problem found in a policy, printed as `file:line:col: error: message`.
public struct Diagnostic: Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }
    public var location: SourceLocation
    public var severity: Severity
    public var message: String

    public init(_ severity: Severity, _ location: SourceLocation, _ message: String) {
        self.severity = severity
        self.location = location
        self.message = message
    }

    public var description: String { "\(location): \(severity.rawValue): \(message)" }
}

/// Collects diagnostics while loading and linting.
public final class Diagnostics {
    public private(set) var all: [Diagnostic] = []
    public init() {}
    public func error(_ at: SourceLocation, _ message: String) { all.append(Diagnostic(.error, at, message)) }
    public func warning(_ at: SourceLocation, _ message: String) { all.append(Diagnostic(.warning, at, message)) }
    public var hasErrors: Bool { all.contains { $0.severity == .error } }
    public var sorted: [Diagnostic] { all.sorted { ($0.location, $0.message) < ($1.location, $1.message) } }
}

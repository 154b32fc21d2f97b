import Foundation

/// A directory of ../shared/reference (or $DRCTL_REFERENCE_DIR), nil when it is not there:
/// tests that read it skip those cases with a message.
public func referenceDirectory(_ sub: String) -> String? {
    let root = ProcessInfo.processInfo.environment["DRCTL_REFERENCE_DIR"]
        ?? packageRoot.deletingLastPathComponent().appendingPathComponent("shared/reference").path
    let dir = root + "/" + sub
    return FileManager.default.fileExists(atPath: dir) ? dir : nil
}

/// The tests' Python (scripts/install-deps.sh makes it): jsonschema, PyYAML, kubernetes-validate, boto3.
public var toolsPython: String { packageRoot.appendingPathComponent(".venv-tools/bin/python3").path }

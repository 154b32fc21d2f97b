import Foundation
import SigV4
import Support

/// Where to look for S3 credentials and settings, in the order the AWS tools use, plus a
/// directory of files as a Kubernetes Secret is mounted (CNPG's `s3Credentials` layout:
/// files `ACCESS_KEY_ID` and `SECRET_ACCESS_KEY`).
public struct CredentialResolver: Sendable {
    public var profile: String?
    public var credentialsDir: String?
    public var environment: [String: String]
    public var home: String

    public init(profile: String? = nil, credentialsDir: String? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment,
                home: String = NSHomeDirectory()) {
        self.profile = profile
        self.credentialsDir = credentialsDir
        self.environment = environment
        self.home = home
    }

    public struct NotFound: Error, CustomStringConvertible {
        public var description: String
    }

    var credentialsFile: String { environment["AWS_SHARED_CREDENTIALS_FILE"] ?? "\(home)/.aws/credentials" }
    var configFile: String { environment["AWS_CONFIG_FILE"] ?? "\(home)/.aws/config" }
    var effectiveProfile: String { profile ?? environment["AWS_PROFILE"] ?? "default" }

    /// Explicit choices first (`--credentials-dir`, `--profile`), then the environment, then the
    /// shared files' profile (`AWS_PROFILE` or `default`).
    public func resolve() throws -> Credentials {
        if let dir = credentialsDir ?? environment["DRCTL_CREDENTIALS_DIR"] { return try fromDirectory(dir) }
        if profile == nil, let id = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"],
           !id.isEmpty, !secret.isEmpty {
            return Credentials(accessKeyID: id, secretAccessKey: secret,
                               sessionToken: environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 },
                               source: "environment (AWS_ACCESS_KEY_ID)")
        }
        let name = effectiveProfile
        for (file, section) in [(credentialsFile, name), (configFile, name == "default" ? "default" : "profile \(name)")] {
            guard let ini = try? IniFile(path: file), let values = ini.sections[section] else { continue }
            if let id = values["aws_access_key_id"], let secret = values["aws_secret_access_key"] {
                return Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: values["aws_session_token"],
                                   source: "profile \(name) in \(file)")
            }
        }
        if profile != nil {
            throw NotFound(description: "profile '\(name)' has no aws_access_key_id/aws_secret_access_key in \(credentialsFile) or \(configFile)")
        }
        throw NotFound(description: "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, use --profile NAME (\(credentialsFile)), or --credentials-dir DIR (files ACCESS_KEY_ID and SECRET_ACCESS_KEY)")
    }

    func fromDirectory(_ dir: String) throws -> Credentials {
        func read(_ names: [String]) -> String? {
            for n in names {
                if let s = try? String(contentsOfFile: "\(dir)/\(n)", encoding: .utf8) {
                    return s.trimmingCharacters(in: .whitespacesAndNewlines)
                }
            }
            return nil
        }
        guard let id = read(["ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"]), !id.isEmpty else {
            throw NotFound(description: "credentials directory \(dir): no ACCESS_KEY_ID file (expected ACCESS_KEY_ID and SECRET_ACCESS_KEY, as in a CNPG s3Credentials secret)")
        }
        guard let secret = read(["ACCESS_SECRET_KEY", "SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"]), !secret.isEmpty else {
            throw NotFound(description: "credentials directory \(dir): no SECRET_ACCESS_KEY file")
        }
        return Credentials(accessKeyID: id, secretAccessKey: secret,
                           sessionToken: read(["ACCESS_SESSION_TOKEN", "SESSION_TOKEN", "AWS_SESSION_TOKEN"]),
                           source: "directory \(dir)")
    }

    /// Region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, else `us-east-1`
    /// (RGW ignores it; AWS does not).
    public func region() -> String {
        if let r = environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"], !r.isEmpty { return r }
        return profileSetting("region") ?? "us-east-1"
    }

    /// A region set by the environment or the profile, if any (not the us-east-1 fallback).
    public func explicitRegion() -> String? {
        if let r = environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"], !r.isEmpty { return r }
        return profileSetting("region")
    }

    /// Endpoint: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, the profile's `endpoint_url`.
    public func endpoint() -> String? {
        if let e = environment["AWS_ENDPOINT_URL_S3"] ?? environment["AWS_ENDPOINT_URL"], !e.isEmpty { return e }
        return profileSetting("endpoint_url")
    }

    func profileSetting(_ key: String) -> String? {
        let name = effectiveProfile
        let section = name == "default" ? "default" : "profile \(name)"
        return (try? IniFile(path: configFile))?.sections[section]?[key]
    }
}

/// The AWS shared-file INI dialect: `[section]`, `key = value`, `#`/`;` comments.
struct IniFile {
    var sections: [String: [String: String]] = [:]

    init(path: String) throws {
        try self.init(text: String(contentsOfFile: path, encoding: .utf8))
    }

    init(text: String) {
        var current: String?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                current = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                if let c = current, sections[c] == nil { sections[c] = [:] }
                continue
            }
            guard let c = current, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            sections[c]?[key] = value
        }
    }
}

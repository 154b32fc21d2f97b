import ArgumentParser
import Foundation
import SigV4
import Support
import HTTP
import ObjectStore

/// Connection options shared by every command that talks to an object store.
struct S3Options: ParsableArguments {
    @Option(help: ArgumentHelp("Object store endpoint, e.g. http://rook-ceph-rgw.rook-ceph.svc:80 (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's endpoint_url, else AWS S3).", valueName: "url"))
    var endpoint: String?

    @Option(help: "Region to sign for (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else us-east-1). RGW ignores it; AWS does not.")
    var region: String?

    @Option(help: "Profile in ~/.aws/credentials and ~/.aws/config (default: AWS_PROFILE, else the environment's keys, else 'default').")
    var profile: String?

    @Option(help: ArgumentHelp("Directory of credential files as mounted from a Kubernetes Secret: ACCESS_KEY_ID, SECRET_ACCESS_KEY (as CNPG's s3Credentials secrets are laid out).", valueName: "dir"))
    var credentialsDir: String?

    @Flag(help: "Path-style addressing (http://host/bucket/key); the default for every endpoint but AWS.")
    var pathStyle = false

    @Flag(help: "Virtual-hosted addressing (http://bucket.host/key); the default for AWS.")
    var virtualHosted = false

    @Option(help: ArgumentHelp("PEM file of CA certificates to trust for HTTPS.", valueName: "file"))
    var caBundle: String?

    @Flag(help: "Do not verify the server's TLS certificate (testing only).")
    var insecure = false

    @Option(name: .customLong("identity"), help: ArgumentHelp("age identity file (AGE-SECRET-KEY-1…, from age-keygen) for reading a copy drctl copy encrypted; repeatable, for rotation (default: $DRCTL_AGE_IDENTITY_FILE, or AGE_IDENTITY in --credentials-dir).", valueName: "file"))
    var identityFiles: [String] = []

    func validate() throws {
        if pathStyle && virtualHosted { throw ValidationError("--path-style and --virtual-hosted exclude each other") }
        if let caBundle, !FileManager.default.isReadableFile(atPath: caBundle) {
            throw ValidationError("--ca-bundle \(caBundle): not a readable file")
        }
    }

    /// The configured client. Its secrets are registered for redaction of every message.
    /// The defaults (from a policy's ObjectStore) apply where neither a flag nor the
    /// environment says otherwise.
    func makeClient(defaultEndpoint: String? = nil, defaultRegion: String? = nil,
                    defaultAddressing: S3Endpoint.Addressing? = nil, defaultCABundle: String? = nil) throws -> S3Client {
        let resolver = CredentialResolver(profile: profile, credentialsDir: credentialsDir)
        let credentials = try resolver.resolve()
        KnownSecrets.shared.add(credentials.secrets)
        let region = self.region ?? resolver.explicitRegion() ?? defaultRegion ?? resolver.region()
        let addressing: S3Endpoint.Addressing? = pathStyle ? .path : virtualHosted ? .virtualHosted : defaultAddressing
        var ep: S3Endpoint
        if let url = endpoint ?? resolver.endpoint() ?? defaultEndpoint {
            ep = try S3Endpoint(url: url, addressing: addressing)
        } else {
            ep = S3Endpoint.aws(region: region)
            if let addressing { ep.addressing = addressing }
        }
        var config = S3Configuration(endpoint: ep, region: region, credentials: credentials)
        config.tls = TLSOptions(caBundle: caBundle ?? defaultCABundle, insecure: insecure)
        if insecure {
            warnOnce("--insecure: the object store's TLS certificate is not checked, so anyone on the path can pose as \(ep) and change what drctl reads")
        }
        return S3Client(config: config)
    }
}

/// A command-line duration: `3600`, `90s`, `15m`, `12h`, `7d` (TimeSpan's commandLine dialect).
func parseSeconds(_ s: String) -> Int? { TimeSpan(dialect: .commandLine, s)?.seconds }

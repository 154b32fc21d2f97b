// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "drctl",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "drctl", targets: ["drctl"]),
        .library(name: "ObjectStore", targets: ["ObjectStore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.20.0"),
        // Already Hummingbird's dependencies; named because Serve uses them directly.
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.30.0"),
    ],
    targets: [
        // Thin system-library targets: the C libraries enter here and nowhere else.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        // Path arithmetic on strings. Pure.
        .target(name: "Paths"),
        // What every module may need and none owns: errors, threads for blocking calls, redaction
        // of secrets, byte counts, percent-encoding, whole writes.
        .target(name: "Support"),
        // Decompression (gzip over zlib) and tar extraction.
        .target(name: "Codecs", dependencies: ["CZlib", "Paths", "Support"]),
        // Digests and HMAC over libcrypto (SHA-256, MD5): SigV4, integrity checks, token cache keys.
        .target(name: "Hashing", dependencies: ["CLibCrypto"]),
        // HTTP over libcurl (TLS, timeouts, streaming bodies): the transport of S3 and Kube.
        .target(name: "HTTP", dependencies: ["CCurl", "Support"]),

        // AWS Signature Version 4, written here: canonical requests, signing keys, presigning. Pure.
        .target(name: "SigV4", dependencies: ["Hashing", "Support"]),
        // drctl's own S3 client: path-style for RGW, parallel listing, resumed downloads.
        .target(name: "ObjectStore", dependencies: [
            "HTTP", "Hashing", "SigV4", "Support",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // One interface to a store, bucket-scoped, read and write sides apart; drivers for S3 (drctl's
        // own client), a directory laid out as the bucket (file://), and memory (tests, faults).
        .target(name: "Storage", dependencies: ["HTTP", "Hashing", "ObjectStore", "SigV4", "Support"]),
        // drctl's own records sealed (HMAC-SHA256 under keys only drctl holds) and checked. Pure.
        .target(name: "Records", dependencies: ["Hashing", "Support"]),
        // The object layouts backup tools write (barman-cloud, Velero): keys <-> typed values. Pure.
        .target(name: "Layout", dependencies: ["Support"]),
        // Backup catalog: restore points, WAL continuity, RPO evidence. Analysis is pure.
        .target(name: "Catalog", dependencies: ["Layout", "Codecs", "Hashing", "Paths", "Records", "Storage", "Support", "Policy", "Replication", .product(name: "GRDB", package: "GRDB.swift")]),
        // Policy model, loading with file:line:col diagnostics, lint rules. Pure: no I/O but reading files.
        .target(name: "Policy", dependencies: ["Layout", "Age", .product(name: "Yams", package: "Yams")]),
        // Policies -> Kubernetes manifests. Pure and deterministic.
        .target(name: "Render", dependencies: ["Policy", "Layout", "Support", .product(name: "Yams", package: "Yams")]),
        // Kubernetes API client over libcurl: kubeconfig and in-cluster auth, discovery, apply.
        .target(name: "Kube", dependencies: ["HTTP", "Support", "Paths", .product(name: "Yams", package: "Yams")]),
        // The age file format (age-encryption.org/v1) over libcrypto: what copies are encrypted with.
        .target(name: "Age", dependencies: ["CLibCrypto", "Hashing"]),
        // Copies of a store to another (3-2-1): planning (pure) and the copy itself, through Storage only.
        .target(name: "Replication", dependencies: ["Storage", "Age", "Hashing", "Layout", "Records", "Support"]),
        // Restores and restore drills: planning (pure), the host restore engine, WAL read-ahead, checks, evidence.
        // Proving drctl's alerts reach someone: test alerts through Alertmanager, its counters read back.
        .target(name: "AlertPath", dependencies: ["HTTP", "Policy", "Render", "Support"]),
        // `drctl report`: RPO met, drills and RTOs over a window, from the catalog's history (pure).
        .target(name: "Report", dependencies: ["Catalog", "Policy", "Support"]),
        .target(name: "Drill", dependencies: ["Catalog", "Layout", "Codecs", "Hashing", "Records", "Storage", "Support", "Paths", "Policy", "Render", "Kube"]),
        // `drctl serve`: the schedule engine, metrics and status page (pure renderers) and their HTTP server.
        .target(name: "Serve", dependencies: ["AlertPath", "Report", "Catalog", "Policy", "Records", "Render", "Layout", "Storage", "Support", "HTTP", "Hashing", .product(name: "Hummingbird", package: "hummingbird"),
                                            .product(name: "HummingbirdCore", package: "hummingbird"), .product(name: "HummingbirdTLS", package: "hummingbird"),
                                            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
                                            .product(name: "Logging", package: "swift-log")]),
        .executableTarget(name: "drctl", dependencies: [
            "ObjectStore", "SigV4", "HTTP", "Storage", "Support", "Policy", "Render", "Catalog", "Layout", "Drill", "Kube", "Serve", "Paths", "Records", "Replication", "Age", "AlertPath", "Report",
            .product(name: "Yams", package: "Yams"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Every parser of outside input behind one libFuzzer entry point (scripts/fuzz); built
        // normally it replays inputs, and the tests replay the committed corpus with it.
        .executableTarget(name: "drctl-fuzz", dependencies: ["ObjectStore", "Support", "Policy", "Records", "Render", "Codecs", "Layout", "Kube"],
                          path: "Tests/Fuzz", exclude: ["corpus"]),

        // Helpers shared by the test targets (running programs, the built drctl).
        .target(name: "TestSupport", dependencies: ["Support"], path: "Tests/TestSupport"),
        .testTarget(name: "SupportTests", dependencies: ["Support", "TestSupport"]),
        .testTarget(name: "HashingTests", dependencies: ["Hashing"]),
        .testTarget(name: "RecordsTests", dependencies: ["Records", "Support"]),
        .testTarget(name: "SigV4Tests", dependencies: ["SigV4", "Hashing", "Support"]),
        .testTarget(name: "ObjectStoreTests", dependencies: ["ObjectStore", "HTTP", "Hashing", "SigV4", "Support"]),
        .testTarget(name: "AgeTests", dependencies: ["Age", "TestSupport"]),
        .testTarget(name: "ReplicationTests", dependencies: ["Replication", "Records", "Storage", "Hashing", "Age", "Catalog", "Layout"]),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "Catalog", "Layout", "Support"]),
        .testTarget(name: "LayoutTests", dependencies: ["Layout"]),
        .testTarget(name: "CodecsTests", dependencies: ["Codecs", "Paths", "TestSupport"]),
        .testTarget(name: "CatalogTests", dependencies: ["Catalog", "Layout", "Codecs", "Records", "Storage", "Support", "Policy", "Paths"]),
        .testTarget(name: "DrillTests", dependencies: ["Drill", "Catalog", "Layout", "TestSupport"]),
        .testTarget(name: "ServeTests", dependencies: ["Serve", "Catalog", "Policy", "Records", "AlertPath", "Storage"]),
        .testTarget(name: "AlertPathTests", dependencies: ["AlertPath", "Policy"]),
        .testTarget(name: "ReportTests", dependencies: ["Report", "Catalog"]),
        .testTarget(name: "IntegrationTests", dependencies: ["ObjectStore", "SigV4", "HTTP", "Hashing", "Support", "Storage", "Layout", "Paths", "Records", "Catalog", "TestSupport", "Kube", "Render", "Policy"]),
        .testTarget(name: "PolicyTests", dependencies: ["Policy", "Render", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "RenderTests", dependencies: ["Render", "Policy", "Layout", "TestSupport", .product(name: "Yams", package: "Yams")]),
        .testTarget(name: "KubeTests", dependencies: ["Kube", "Support"]),
    ]
)

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
        // Decompression (gzip over zlib) and tar extraction.
        .target(name: "Codecs", dependencies: ["CZlib", "Paths"]),

        .target(name: "ObjectStore", dependencies: [
            "CCurl", "CLibCrypto",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // One interface to a store, bucket-scoped, read and write sides apart; drivers for S3 (drctl's
        // own client), a directory laid out as the bucket (file://), and memory (tests, faults).
        .target(name: "Storage", dependencies: ["ObjectStore"]),
        // The object layouts backup tools write (barman-cloud, Velero): keys <-> typed values. Pure.
        .target(name: "Layout"),
        // Backup catalog: restore points, WAL continuity, RPO evidence. Analysis is pure.
        .target(name: "Catalog", dependencies: ["Layout", "Codecs", "Paths", "ObjectStore", "Storage", "Policy", .product(name: "GRDB", package: "GRDB.swift")]),
        // Policy model, loading with file:line:col diagnostics, lint rules. Pure: no I/O but reading files.
        .target(name: "Policy", dependencies: ["Layout", .product(name: "Yams", package: "Yams")]),
        // Policies -> Kubernetes manifests. Pure and deterministic.
        .target(name: "Render", dependencies: ["Policy", "Layout", .product(name: "Yams", package: "Yams")]),
        // Kubernetes API client over libcurl: kubeconfig and in-cluster auth, discovery, apply.
        .target(name: "Kube", dependencies: ["ObjectStore", "Paths", .product(name: "Yams", package: "Yams")]),
        // Restores and restore drills: planning (pure), the host restore engine, WAL read-ahead, checks, evidence.
        .target(name: "Drill", dependencies: ["Catalog", "Layout", "Codecs", "ObjectStore", "Storage", "Paths", "Policy", "Render", "Kube"]),
        // `drctl serve`: the schedule engine, metrics and status page (pure renderers) and their HTTP server.
        .target(name: "Serve", dependencies: ["Catalog", "Policy", "ObjectStore", .product(name: "Hummingbird", package: "hummingbird"),
                                            .product(name: "HummingbirdCore", package: "hummingbird"), .product(name: "HummingbirdTLS", package: "hummingbird"),
                                            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
                                            .product(name: "Logging", package: "swift-log")]),
        .executableTarget(name: "drctl", dependencies: [
            "ObjectStore", "Storage", "Policy", "Render", "Catalog", "Layout", "Drill", "Kube", "Serve", "Paths",
            .product(name: "Yams", package: "Yams"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Every parser of outside input behind one libFuzzer entry point (scripts/fuzz); built
        // normally it replays inputs, and the tests replay the committed corpus with it.
        .executableTarget(name: "drctl-fuzz", dependencies: ["ObjectStore", "Policy", "Render", "Codecs", "Layout", "Kube"],
                          path: "Tests/Fuzz", exclude: ["corpus"]),

        // Helpers shared by the test targets (running programs, the built drctl).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "ObjectStoreTests", dependencies: ["ObjectStore"]),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "Catalog", "Layout"]),
        .testTarget(name: "LayoutTests", dependencies: ["Layout"]),
        .testTarget(name: "CodecsTests", dependencies: ["Codecs", "Paths", "TestSupport"]),
        .testTarget(name: "CatalogTests", dependencies: ["Catalog", "Layout", "Codecs", "ObjectStore"]),
        .testTarget(name: "DrillTests", dependencies: ["Drill", "Catalog", "Layout"]),
        .testTarget(name: "ServeTests", dependencies: ["Serve", "Catalog", "Policy"]),
        .testTarget(name: "IntegrationTests", dependencies: ["ObjectStore", "Storage", "Layout", "Paths", "TestSupport", "Kube"]),
        .testTarget(name: "PolicyTests", dependencies: ["Policy", "Render", "TestSupport"], resources: [.copy("Fixtures")]),
    ]
)

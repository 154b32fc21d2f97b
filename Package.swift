// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "drctl",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "drctl", targets: ["drctl"]),
        .library(name: "ObjectStore", targets: ["ObjectStore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // Thin system-library targets: the C libraries enter here and nowhere else.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),

        .target(name: "ObjectStore", dependencies: [
            "CCurl", "CLibCrypto",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "drctl", dependencies: [
            "ObjectStore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .testTarget(name: "ObjectStoreTests", dependencies: ["ObjectStore"]),
        .testTarget(name: "IntegrationTests", dependencies: ["ObjectStore"]),
    ]
)

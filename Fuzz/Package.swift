// swift-tools-version:5.3
// The fuzz targets: a package of its own so that the main package's build is untouched. Tools version
// 5.3 on purpose: from 5.5 on, SwiftPM renames an executable's entry point, and libFuzzer supplies
// `main` itself. scripts/fuzz builds it with -sanitize=fuzzer,address and runs every `fuzz-*` product.
import PackageDescription

let kit = Target.Dependency.product(name: "VhostUserKit", package: "vhost-user-devices")
let testing = Target.Dependency.product(name: "VhostUserTesting", package: "vhost-user-devices")
let blk = Target.Dependency.product(name: "BlockDevice", package: "vhost-user-devices")

let package = Package(
    name: "vhost-user-fuzz",
    dependencies: [
        .package(name: "vhost-user-devices", path: ".."),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    ],
    targets: [
        // memfd, fallocate and AddressSanitizer's poisoning, which Swift's Glibc module does not have.
        .target(name: "CFuzzShim"),
        // What every target shares: input decoding, guest memory, rings from bytes and their oracle.
        .target(name: "FuzzSupport", dependencies: [
            "CFuzzShim", kit, testing,
            .product(name: "Logging", package: "swift-log"),
        ]),
        // One target per fuzzer: a main.swift with LLVMFuzzerTestOneInput (and its seeds).
        .target(name: "fuzz-chain", dependencies: ["FuzzSupport", kit]),
        .target(name: "fuzz-blk", dependencies: ["FuzzSupport", kit, blk]),
        .target(name: "fuzz-session", dependencies: ["FuzzSupport", kit, blk, testing]),
    ],
    swiftLanguageVersions: [.version("6")]
)

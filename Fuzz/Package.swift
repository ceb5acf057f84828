// swift-tools-version:5.3
// The fuzz targets: a package of its own, so that the main package's build is untouched. Tools version
// 5.3 on purpose: from 5.5 on, SwiftPM renames an executable's entry point, and libFuzzer supplies
// `main` itself. scripts/fuzz builds it with -sanitize=fuzzer,address and runs every `fuzz-*` target.
//
// Every directory Sources/fuzz-NAME (a main.swift with LLVMFuzzerTestOneInput, and its seeds) is a fuzz
// target: adding one needs no edit here unless it fuzzes a device library not listed in `devices`.
import Foundation
import PackageDescription

let main = "vhost-user-devices"
let kit = Target.Dependency.product(name: "VhostUserKit", package: main)
let testing = Target.Dependency.product(name: "VhostUserTesting", package: main)
/// The main package's device libraries (each a library product there), available to every target.
let devices: [Target.Dependency] = ["BlockDevice", "I2CDevice", "RPMBDevice", "GPIODevice", "InputDevice", "ConsoleDevice", "VsockDevice", "SoundDevice"].map { .product(name: $0, package: main) }

let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Sources")
let fuzzTargets = ((try? FileManager.default.contentsOfDirectory(atPath: sources.path)) ?? [])
    .filter { $0.hasPrefix("fuzz-") }
    .sorted()

let package = Package(
    name: "vhost-user-fuzz",
    dependencies: [
        .package(name: main, path: ".."),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    ],
    targets: [
        // memfd, fallocate and AddressSanitizer's poisoning, which Swift's Glibc module does not have.
        .target(name: "CFuzzShim"),
        // What every target shares: input decoding, guest memory, rings from bytes and their oracle.
        .target(name: "FuzzSupport", dependencies: [
            "CFuzzShim", kit, testing, .product(name: "Logging", package: "swift-log"),
        ]),
    ] + fuzzTargets.map { .target(name: $0, dependencies: ["FuzzSupport", kit, testing] + devices) },
    swiftLanguageVersions: [.version("6")]
)

// Small static programs for the guest (what busybox lacks: a vsock client, a GPIO tool, ...).

import Foundation

/// The guest's helper programs: `Sources/GuestBed/GuestTools/<name>.c`, one plain C file each,
/// compiled on the host with `gcc -static -O2` (against the host's kernel UAPI headers) into the
/// cache, keyed by the source's contents, and placed at `/bin/<name>` in the initramfs.
enum GuestTools {
    static let sourceDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("GuestTools").path

    /// The compiled executables of `names`, as (name, host path) pairs.
    static func compile(_ names: [String]) throws -> [(name: String, path: String)] {
        try names.map { name in (name, try compile(name)) }
    }

    private static let lock = NSLock()

    static func compile(_ name: String) throws -> String {
        let source = "\(sourceDirectory)/\(name).c"
        guard let text = FileManager.default.contents(atPath: source) else {
            throw GuestTestBedError("no guest tool \(name): \(source) is missing")
        }
        var hasher = Hasher64()
        hasher.add(text)
        let directory = cacheDirectory("guest-tools", override: "VHOST_USER_GUEST_TOOLS_CACHE")
        let output = "\(directory)/\(name)-\(hasher.hex)"
        lock.lock()
        defer { lock.unlock() }
        if FileManager.default.isExecutableFile(atPath: output) { return output }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let partial = "\(output).part"
        let log = "\(output).log"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try findInPath("gcc"))
        process.arguments = ["-static", "-O2", "-Wall", "-Werror", "-o", partial, source]
        FileManager.default.createFile(atPath: log, contents: nil)
        let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        defer { try? logHandle.close(); try? FileManager.default.removeItem(atPath: log) }
        process.standardOutput = logHandle
        process.standardError = logHandle
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw GuestTestBedError("gcc -static \(source) failed:\n\(tail(readText(log)))")
        }
        try FileManager.default.moveItem(atPath: partial, toPath: output)
        return output
    }
}

/// FNV-1a, 64 bits: a stable key for cached builds (Swift's Hasher is seeded per process).
struct Hasher64 {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ data: Data) {
        for byte in data {
            value ^= UInt64(byte)
            value &*= 0x100_0000_01b3
        }
    }

    var hex: String { String(value, radix: 16) }
}

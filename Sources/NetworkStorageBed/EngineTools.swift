// The engines' own tools, for tests that check a disk's data on the host.

import Foundation
import SystemdBed

/// `qemu-img compare` and `sha256sum`, run on the host.
public enum EngineTools {
    /// Nil when the two raw images hold the same data; else what `qemu-img compare` said.
    public static func compareRawImages(_ a: String, _ b: String) throws -> String? {
        let result = try HostCommand.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", a, b], timeout: .seconds(120))
        return result.status == 0 ? nil : result.transcript
    }

    /// The SHA-256 (hex) of `count` bytes of `path` from `offset`, as a guest's `sha256sum` prints it.
    public static func sha256(_ path: String, offset: Int, count: Int) throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        let data = try handle.read(upToCount: count) ?? Data()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("engine-sha-\(UUID().uuidString.prefix(8))")
        try data.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try HostCommand.run(["sha256sum", file.path], timeout: .seconds(60))
        return result.output.split(separator: " ").first.map(String.init) ?? ""
    }
}

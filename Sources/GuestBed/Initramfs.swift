// The guest's initramfs (/init, busybox, modules, the script) and the parsing of its output.

import Foundation

/// The guest's initramfs: busybox, the kernel modules, an /init and the test script.
enum Initramfs {
    static let busybox = "/bin/busybox"

    static func beginMarker(_ nonce: String) -> String { "<<<guest-output \(nonce)>>>" }
    static func endMarker(_ nonce: String) -> String { "<<<guest-status \(nonce) " }

    /// `/init`: mounts, loads the modules in order, runs /test.sh with its output between markers on
    /// /dev/ttyS1 and the host's input (`GuestControl.send`) on descriptor 3 (/dev/ttyS2, opened
    /// before the script starts so that nothing the host sends is lost), and powers off.
    static func initScript(modules: [String], nonce: String) -> String {
        let inserts = modules.map { "insmod \($0) || { echo \"init: insmod \($0) failed\"; exit 125; }" }
        return """
            #!/bin/sh
            mount -t proc proc /proc
            mount -t sysfs sysfs /sys
            mount -t devtmpfs devtmpfs /dev
            mount -t tmpfs tmpfs /tmp
            stty -F /dev/ttyS1 raw -echo 2>/dev/null
            stty -F /dev/ttyS2 raw -echo clocal 2>/dev/null
            exec 3< /dev/ttyS2
            out=/dev/ttyS1
            echo '\(beginMarker(nonce))' > $out
            (
            \(inserts.joined(separator: "\n"))
            cd /tmp
            exec sh /test.sh
            ) > $out 2>&1 < /dev/null
            status=$?
            echo > $out
            echo '\(endMarker(nonce))'$status'>>>' > $out
            sync
            poweroff -f

            """
    }

    /// The text between the markers and the status, or nil when the markers are incomplete.
    /// (/init writes a newline after the script's output so that the end marker starts a line.)
    static func parseOutput(_ text: String, nonce: String) -> (output: String, status: Int32)? {
        let begin = beginMarker(nonce) + "\n"
        let end = "\n" + endMarker(nonce)
        guard let b = text.range(of: begin),
            let e = text.range(of: end, range: b.upperBound..<text.endIndex),
            let close = text.range(of: ">>>", range: e.upperBound..<text.endIndex),
            let status = Int32(text[e.upperBound..<close.lowerBound])
        else { return nil }
        return (String(text[b.upperBound..<e.lowerBound]), status)
    }

    /// The archive: busybox, `modules` (host paths, loaded in order), `tools` at `/bin/<name>`, /init
    /// and `script` as /test.sh.
    static func build(
        modules: [String], tools: [(name: String, path: String)] = [], script: String, nonce: String
    ) throws -> Data {
        var archive = CPIOArchive()
        for dir in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "modules"] {
            archive.directory(dir)
        }
        archive.characterDevice("dev/console", major: 5, minor: 1)
        archive.file("bin/busybox", contents: try Data(contentsOf: URL(fileURLWithPath: busybox)), mode: 0o755)
        for applet in try busyboxApplets() where applet != "bin/busybox" {
            archive.symlink(applet, target: "/bin/busybox")
        }
        for tool in tools {
            archive.file("bin/\(tool.name)", contents: try Data(contentsOf: URL(fileURLWithPath: tool.path)), mode: 0o755)
        }
        var guestModules: [String] = []
        for (index, path) in modules.enumerated() {
            let name = "modules/\(index)-\((path as NSString).lastPathComponent)"
            archive.file(name, contents: try Data(contentsOf: URL(fileURLWithPath: path)), mode: 0o644)
            guestModules.append("/" + name)
        }
        archive.file("init", contents: Data(initScript(modules: guestModules, nonce: nonce).utf8), mode: 0o755)
        archive.file("test.sh", contents: Data(script.utf8), mode: 0o755)
        return archive.finish()
    }

    /// The applets' paths (e.g. `bin/sh`, `usr/bin/sha256sum`) from `busybox --list-full`.
    static func busyboxApplets() throws -> [String] {
        guard FileManager.default.isExecutableFile(atPath: busybox) else {
            throw GuestTestBedError("\(busybox) is missing: run scripts/install-deps (busybox-static)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: busybox)
        process.arguments = ["--list-full"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}

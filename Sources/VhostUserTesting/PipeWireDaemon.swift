import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A PipeWire daemon of the test's own: its runtime directory in a temporary directory, a minimal
/// configuration (no session manager) with a dummy driver and a null sink `vhu-sink` whose monitor
/// ports give back what is played into it. `link` stands in for the session manager (`pw-link`).
/// Clients of this process find it through PIPEWIRE_RUNTIME_DIR.
public final class PipeWireDaemon {
    public let directory: String
    private let process: Process

    /// Why PipeWire cannot run here, or nil.
    public static var unavailable: String? {
        for tool in ["pipewire", "pw-link"] where !FileManager.default.isExecutableFile(atPath: "/usr/bin/\(tool)") {
            return "/usr/bin/\(tool) is not installed (Debian packages pipewire and pipewire-bin)"
        }
        return nil
    }

    static let configuration = """
        context.properties = { core.daemon = true core.name = pipewire-0 support.dbus = false default.clock.rate = 48000 }
        context.spa-libs = { audio.convert.* = audioconvert/libspa-audioconvert support.* = support/libspa-support }
        context.modules = [
          { name = libpipewire-module-protocol-native }
          { name = libpipewire-module-metadata }
          { name = libpipewire-module-spa-node-factory }
          { name = libpipewire-module-client-node }
          { name = libpipewire-module-access }
          { name = libpipewire-module-adapter }
          { name = libpipewire-module-link-factory }
        ]
        context.objects = [
          { factory = spa-node-factory args = { factory.name = support.node.driver node.name = vhu-driver priority.driver = 20000 } }
          { factory = adapter args = { factory.name = support.null-audio-sink node.name = vhu-sink media.class = Audio/Sink
              audio.position = [ FL FR ] audio.rate = 48000 object.linger = true node.driver = true
              adapter.auto-port-config = { mode = dsp monitor = true position = preserve } } }
        ]
        """

    /// Starts the daemon and waits (bounded) until its socket exists.
    public init() throws {
        var template = Array("/tmp/pw-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw PipeWireDaemonError("mkdtemp: errno \(errno)") }
        directory = String(cString: made)
        try Self.configuration.write(toFile: "\(directory)/pipewire.conf", atomically: true, encoding: .utf8)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/pipewire")
        process.arguments = ["-c", "\(directory)/pipewire.conf"]
        process.environment = ["XDG_RUNTIME_DIR": directory, "PIPEWIRE_RUNTIME_DIR": directory, "PATH": "/usr/bin:/bin"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        let deadline = Date(timeIntervalSinceNow: 10)
        while !FileManager.default.fileExists(atPath: "\(directory)/pipewire-0") {
            guard process.isRunning, Date() < deadline else {
                stop()
                throw PipeWireDaemonError("pipewire did not create its socket in \(directory) within 10 s")
            }
            usleep(10_000)
        }
        setenv("PIPEWIRE_RUNTIME_DIR", directory, 1)
    }

    /// Links output port `from` to input port `to` (`node:port` names), retrying (bounded) while
    /// the ports are still being made.
    public func link(_ from: String, _ to: String) throws {
        let deadline = Date(timeIntervalSinceNow: 10)
        while true {
            let tool = Process()
            tool.executableURL = URL(fileURLWithPath: "/usr/bin/pw-link")
            tool.arguments = [from, to]
            tool.environment = ["XDG_RUNTIME_DIR": directory, "PIPEWIRE_RUNTIME_DIR": directory]
            tool.standardOutput = FileHandle.nullDevice
            tool.standardError = FileHandle.nullDevice
            try tool.run()
            tool.waitUntilExit()
            if tool.terminationStatus == 0 { return }
            guard Date() < deadline else {
                throw PipeWireDaemonError("pw-link \(from) \(to) kept failing for 10 s; ports: \(try self.tool(["-o", "-i"]))")
            }
            usleep(20_000)
        }
    }

    /// `pw-link`'s output with `arguments` (e.g. the ports, for a failure's message).
    public func tool(_ arguments: [String]) throws -> String {
        let tool = Process(), pipe = Pipe()
        tool.executableURL = URL(fileURLWithPath: "/usr/bin/pw-link")
        tool.arguments = arguments
        tool.environment = ["XDG_RUNTIME_DIR": directory, "PIPEWIRE_RUNTIME_DIR": directory]
        tool.standardOutput = pipe
        tool.standardError = FileHandle.nullDevice
        try tool.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        tool.waitUntilExit()
        return String(decoding: output, as: UTF8.self)
    }

    /// Ends the daemon (SIGTERM, then SIGKILL after 5 s) and removes its directory.
    public func stop() {
        if process.isRunning {
            process.terminate()
            let deadline = Date(timeIntervalSinceNow: 5)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { stop() }
}

/// Why the test's PipeWire daemon could not start or link.
public struct PipeWireDaemonError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

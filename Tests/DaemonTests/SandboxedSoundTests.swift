import Foundation
import Glibc
import SoundDevice
import Testing
import VhostUserKit
import VhostUserTesting

/// vhost-user-snd as a process in its sandbox, driven by the fake front-end: a playback stream on
/// the alsa backend (an alsa-lib `file` PCM over `null`, configured through ALSA_CONFIG_PATH) goes
/// through SET_PARAMS, PREPARE (the PCM opens under the filter), periods, START, STOP and RELEASE, and
/// the PCM's file holds every period byte for byte.
@Suite("vhost-user-snd in its sandbox")
struct SandboxedSoundTests {
    /// 100 ms of 48 kHz stereo S16: the daemon paces periods in real time and its alsa thread may
    /// fall four periods behind before one is dropped, which a busy machine must not reach.
    static let period = 19200, periods = 8

    @Test("the alsa backend plays periods under the filter; they reach alsa-lib's file PCM")
    func alsaPlayback() throws {
        let tmp = try TemporaryDirectory()
        let socket = "\(tmp.path)/snd.sock", output = "\(tmp.path)/played.raw", config = "\(tmp.path)/asound.conf"
        try """
            pcm.vhunull { type null }
            pcm.vhuplay { type file slave.pcm vhunull file "\(output)" format raw }
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let process = try DaemonProcess(product: "vhost-user-snd",
                                        ["--socket-path", socket, "--backend", "alsa", "--alsa-playback", "vhuplay",
                                         "--playback", "channels=2:formats=s16:rates=48000", "--no-period-events"],
                                        environment: ["ALSA_CONFIG_PATH": config])
        defer { process.stop() }
        try process.waitForStandardError(containing: "listening on \(socket)")
        let connection = try ConnectedFrontend(socketPath: socket, queueSizes: [64, 64, 64, 64], memorySize: 8 << 20)
        let frontend = SoundFrontend(connection: connection)

        #expect(try frontend.setParams(stream: 0, buffer: UInt32(Self.period * 4), period: UInt32(Self.period)) == Self.ok,
                "\(process.diagnostics)")
        #expect(try frontend.pcm(.pcmPrepare, stream: 0) == Self.ok, "\(process.diagnostics)")
        // As Linux's driver does: the periods are queued first, then START starts the clock.
        let played = (0..<Self.periods * Self.period).map { UInt8(truncatingIfNeeded: $0 / 2 &+ $0 % 5) }
        let statuses = (0..<Self.periods).map { frontend.play(stream: 0, Array(played[($0 * Self.period)..<(($0 + 1) * Self.period)])) }
        connection.queues[VirtioSound.txQueue].notifyDevice()
        #expect(try frontend.pcm(.pcmStart, stream: 0) == Self.ok)
        do {
            _ = try connection.queues[VirtioSound.txQueue].waitForUsed(Self.periods)
        } catch {
            Issue.record("the periods did not complete: \(process.diagnostics)")
            throw error
        }
        let written = statuses.map { connection.memory.read($0, count: 4) }
        #expect(written.allSatisfy { $0 == SoundFrontend.le(Self.ok) }, "statuses \(written): \(process.diagnostics)")
        #expect(try frontend.pcm(.pcmStop, stream: 0) == Self.ok)
        #expect(try frontend.pcm(.pcmRelease, stream: 0) == Self.ok)

        // RELEASE closes the PCM (the backend thread plays out what it holds, the file plugin
        // flushes): within a bounded wait the file holds every period in order. A period that was due
        // before the worker got to it (a busy machine) is played as silence, as a sound card plays
        // an underrun: whole periods of zeroes, which the comparison leaves out.
        var heard: [UInt8] = []
        let deadline = ContinuousClock.now + .seconds(10)
        repeat {
            let recorded = (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: output)))) ?? []
            heard = stride(from: 0, to: recorded.count - recorded.count % Self.period, by: Self.period)
                .map { recorded[$0..<($0 + Self.period)] }
                .filter { !$0.allSatisfy { $0 == 0 } }
                .flatMap { $0 }
        } while heard.count < played.count && ContinuousClock.now < deadline && usleep(10_000) == 0
        #expect(heard.count == played.count, "\(process.diagnostics)")
        let same = heard == played
        #expect(same, "the recording differs from what was played")
        #expect(process.waitForExit(timeout: .milliseconds(100)) == nil, "\(process.diagnostics)")
    }

    static let ok = VirtioSound.Status.ok.rawValue
}

/// Control requests and playback buffers of virtio-snd on a daemon process's queues.
struct SoundFrontend {
    let connection: ConnectedFrontend

    static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }

    /// A controlq request; its status.
    func control(_ request: [UInt8]) throws -> UInt32 {
        let memory = connection.memory, queue = connection.queues[VirtioSound.controlQueue]
        let r = memory.allocate(request.count), response = memory.allocate(4)
        memory.write(request, at: r)
        memory.write([0xee, 0xee, 0xee, 0xee], at: response)
        queue.submit([.readable(r, request.count), .writable(response, 4)])
        queue.notifyDevice()
        _ = try queue.waitForUsed(1)
        return memory.read(response, count: 4).reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    func pcm(_ code: VirtioSound.Code, stream: UInt32) throws -> UInt32 {
        try control(Self.le(code.rawValue) + Self.le(stream))
    }

    /// SET_PARAMS for stereo S16 at 48 kHz.
    func setParams(stream: UInt32, buffer: UInt32, period: UInt32) throws -> UInt32 {
        try control(Self.le(VirtioSound.Code.pcmSetParams.rawValue) + Self.le(stream) + Self.le(buffer) + Self.le(period)
                    + Self.le(UInt32(0)) + [2, VirtioSound.Format.s16.rawValue, 7, 0])
    }

    /// Queues a txq buffer (xfer header, samples, status) without a kick; returns the status address.
    func play(stream: UInt32, _ samples: [UInt8]) -> UInt64 {
        let memory = connection.memory
        let header = memory.allocate(4), data = memory.allocate(samples.count), status = memory.allocate(8)
        memory.write(Self.le(stream), at: header)
        memory.write(samples, at: data)
        memory.write([UInt8](repeating: 0xee, count: 8), at: status)
        connection.queues[VirtioSound.txQueue].submit([.readable(header, 4), .readable(data, samples.count), .writable(status, 8)])
        return status
    }
}

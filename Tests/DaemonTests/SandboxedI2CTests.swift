import Foundation
import Glibc
import Testing
import VhostUserKit
import VhostUserTesting

/// vhost-user-i2c as a process in its default sandbox, driven by the fake front-end: a page write, a
/// combined write+read, a sensor read and a refused address run under the filter, and the EEPROM's
/// file holds what the guest wrote.
@Suite("vhost-user-i2c in its sandbox")
struct SandboxedI2CTests {
    @Test("EEPROM and sensor transactions succeed under the filter; the data reaches the file")
    func simulatedClients() throws {
        let tmp = try TemporaryDirectory()
        let socket = "\(tmp.path)/i2c.sock", eeprom = "\(tmp.path)/eeprom.bin"
        let process = try DaemonProcess(product: "vhost-user-i2c", ["--socket-path", socket, "--eeprom", "addr=0x50,size=4096,page=32,file=\(eeprom)",
                                                                    "--sensor", "addr=0x48,temp=-5"])
        defer { process.stop() }
        try process.waitForStandardError(containing: "listening on \(socket)")
        let connection = try ConnectedFrontend(socketPath: socket, queueSizes: [64])
        let memory = connection.memory, queue = connection.queue

        /// One transaction of (7-bit address, bytes to write or nil, bytes to read): statuses and read data.
        func transaction(_ messages: [(UInt16, [UInt8]?, Int)]) throws -> [(UInt8, [UInt8])] {
            let laid = messages.enumerated().map { i, m in
                let header = memory.allocate(8), status = memory.allocate(1)
                var w = ByteWriter()
                w.u16(m.0 << 1); w.u16(0); w.u32((i < messages.count - 1 ? 1 : 0) | (m.1 == nil ? 2 : 0))
                memory.write(w.bytes, at: header)
                memory.write([0xee], at: status)
                var buffers: [BufferSpec] = [.readable(header, 8)]
                var data: UInt64 = 0
                if let bytes = m.1, !bytes.isEmpty {
                    data = memory.allocate(bytes.count)
                    memory.write(bytes, at: data)
                    buffers.append(.readable(data, bytes.count))
                } else if m.2 > 0 {
                    data = memory.allocate(m.2)
                    buffers.append(.writable(data, m.2))
                }
                queue.submit(buffers + [.writable(status, 1)])
                return (status, data, m.2)
            }
            queue.notifyDevice()
            do {
                _ = try queue.waitForUsed(messages.count)
            } catch {
                Issue.record("no answer: \(process.diagnostics)")
                throw error
            }
            return laid.map { (memory.read($0.0, count: 1)[0], $0.2 > 0 ? memory.read($0.1, count: $0.2) : []) }
        }

        #expect(try transaction([(0x50, [0x01, 0x1e, 1, 2, 3, 4], 0)]).map(\.0) == [0])
        let back = try transaction([(0x50, [0x01, 0x1e], 0), (0x50, nil, 2)])
        #expect(back.map(\.0) == [0, 0] && back[1].1 == [1, 2])
        #expect(try transaction([(0x48, nil, 2)]).map(\.1) == [[0xfb, 0x00]])   // -5 °C
        #expect(try transaction([(0x51, [], 0)]).map(\.0) == [1])
        let file = try [UInt8](Data(contentsOf: URL(fileURLWithPath: eeprom)))
        #expect(Array(file[0x11e...0x11f]) == [1, 2] && Array(file[0x100...0x101]) == [3, 4])
        #expect(process.waitForExit(timeout: .milliseconds(100)) == nil, "\(process.diagnostics)")
    }
}

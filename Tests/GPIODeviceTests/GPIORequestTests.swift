import Testing
import VhostUserKit
import VhostUserTesting
@testable import GPIODevice

private typealias T = GPIOTestBench

@Suite("virtio-gpio requestq: every request, status and refusal")
struct GPIORequestTests {
    @Test("config space: ngpio and the names block's size")
    func configSpace() throws {
        let bench = try GPIOTestBench()
        // "led\0button\0out2\0in3\0" + four empty names = 4 + 7 + 5 + 4 + 4 bytes.
        #expect(bench.device.readConfig(offset: 0, count: 8) == [8, 0, 0, 0, 24, 0, 0, 0])
        #expect(bench.device.deviceFeatures == VirtioGPIO.featureIRQ)
        #expect(bench.device.queueGroups == [[0, 1]])
        let unnamed = GPIODevice(chip: try SimulatedChip(layout: try SimulatedChipLayout(lineCount: 300)), interrupts: false)
        #expect(unnamed.readConfig(offset: 0, count: 8) == [44, 1, 0, 0, 0, 0, 0, 0])
        #expect(unnamed.deviceFeatures == 0)
    }

    @Test("GET_NAMES: the status byte, then every name NUL-terminated, in a response of exactly 1 + gpio_names_size")
    func getNames() throws {
        let bench = try GPIOTestBench()
        let (length, response) = bench.raw(T.header(T.requestType.getNames, line: 0, value: 0), responseSize: 25)
        #expect(length == 25)
        #expect(response == [T.ok] + Array("led\0button\0out2\0in3\0\0\0\0\0".utf8))
        // Too small a buffer for the names: ERR, and the value byte zeroed.
        let short = bench.raw(T.header(T.requestType.getNames, line: 0, value: 0), responseSize: 24)
        #expect(short.length == 2 && short.response[0] == T.error && short.response[1] == 0)
    }

    @Test("GET_NAMES on a chip without names is refused")
    func getNamesWithoutNames() throws {
        let bench = try GPIOTestBench(layout: try SimulatedChipLayout(lineCount: 2))
        let (length, response) = bench.raw(T.header(T.requestType.getNames, line: 0, value: 0), responseSize: 8)
        #expect(length == 2 && response[0] == T.error)
    }

    @Test("SET_DIRECTION and GET_DIRECTION: lines start as inputs; out, in, none; other values refused")
    func directions() throws {
        let bench = try GPIOTestBench()
        #expect(bench.request(T.requestType.getDirection, line: 4) == (T.ok, 2, 2))
        #expect(bench.request(T.requestType.setDirection, line: 4, value: 1) == (T.ok, 0, 2))
        #expect(bench.request(T.requestType.getDirection, line: 4) == (T.ok, 1, 2))
        #expect(bench.request(T.requestType.setDirection, line: 4, value: 0) == (T.ok, 0, 2))
        #expect(bench.request(T.requestType.getDirection, line: 4) == (T.ok, 0, 2))
        #expect(bench.request(T.requestType.setDirection, line: 4, value: 2) == (T.ok, 0, 2))
        #expect(bench.request(T.requestType.getDirection, line: 4) == (T.ok, 2, 2))
        for bad: UInt32 in [3, 4, 255, 256, 0x1_0001, .max] {
            #expect(bench.request(T.requestType.setDirection, line: 4, value: bad) == (T.error, 0, 2))
        }
        #expect(bench.request(T.requestType.getDirection, line: 4) == (T.ok, 2, 2))
    }

    @Test("SET_VALUE drives an output, and its loopback partner reads it; a value set before the direction is used once it is an output")
    func valuesAndLoopback() throws {
        let bench = try GPIOTestBench()
        #expect(bench.request(T.requestType.setValue, line: 0, value: 1).status == T.ok)
        #expect(bench.request(T.requestType.getValue, line: 1).value == 0)  // line 0 is still an input
        #expect(bench.request(T.requestType.setDirection, line: 0, value: 1).status == T.ok)
        #expect(bench.request(T.requestType.getValue, line: 0) == (T.ok, 1, 2))
        #expect(bench.request(T.requestType.getValue, line: 1) == (T.ok, 1, 2))
        #expect(bench.request(T.requestType.setValue, line: 0, value: 0).status == T.ok)
        #expect(bench.request(T.requestType.getValue, line: 1) == (T.ok, 0, 2))
        // The other pair goes the other way round.
        bench.drive(output: 3, true)
        #expect(bench.request(T.requestType.getValue, line: 2) == (T.ok, 1, 2))
        for bad: UInt32 in [2, 0x100, .max] {
            #expect(bench.request(T.requestType.setValue, line: 0, value: bad) == (T.error, 0, 2))
        }
        #expect(bench.request(T.requestType.getValue, line: 0) == (T.ok, 0, 2))
    }

    @Test("NONE discards the line's state: the output value set before is gone")
    func noneDiscardsState() throws {
        let bench = try GPIOTestBench()
        bench.request(T.requestType.setValue, line: 4, value: 1)
        bench.request(T.requestType.setDirection, line: 4, value: 0)
        bench.request(T.requestType.setDirection, line: 4, value: 1)
        #expect(bench.request(T.requestType.getValue, line: 4) == (T.ok, 0, 2))
    }

    @Test("a line number out of range is refused for every request type (GET_NAMES ignores it)")
    func outOfRangeLines() throws {
        let bench = try GPIOTestBench()
        for line: UInt16 in [8, 9, 0x100, .max] {
            for type in [T.requestType.getDirection, T.requestType.setDirection, T.requestType.getValue,
                         T.requestType.setValue, T.requestType.setIRQType] {
                #expect(bench.request(type, line: line, value: 1) == (T.error, 0, 2), "type \(type) line \(line)")
            }
        }
        #expect(bench.raw(T.header(T.requestType.getNames, line: 9, value: 0), responseSize: 25).response[0] == T.ok)
    }

    @Test("a line the host keeps is refused for every request type")
    func busyLine() throws {
        let bench = try GPIOTestBench()
        for type in [T.requestType.getDirection, T.requestType.setDirection, T.requestType.getValue,
                     T.requestType.setValue, T.requestType.setIRQType] {
            for value: UInt32 in [0, 1] {
                #expect(bench.request(type, line: 7, value: value) == (T.error, 0, 2), "type \(type) value \(value)")
            }
        }
        #expect(bench.request(T.requestType.getDirection, line: 6) == (T.ok, 2, 2))
    }

    @Test("malformed requests get ERR (or nothing, without a response buffer), and the device keeps serving")
    func malformedRequests() throws {
        let bench = try GPIOTestBench()
        let good = T.header(T.requestType.getValue, line: 0, value: 0)
        // Wrong request lengths.
        for bytes in [[], Array(good.prefix(7)), good + [0], good + [UInt8](repeating: 0, count: 100)] {
            let (length, response) = bench.raw(bytes)
            #expect(length == 2 && response == [T.error, 0], "request of \(bytes.count) bytes")
        }
        // Unknown types.
        for type: UInt16 in [0, 7, 8, 0x100, .max] {
            #expect(bench.request(type, line: 0) == (T.error, 0, 2), "type \(type)")
        }
        // A response buffer of one byte: the status alone. None: a completion of length 0.
        #expect(bench.raw(good, responseSize: 1) == (1, [T.error]))
        #expect(bench.raw(good, responseSize: 0).length == 0)
        // A bigger response buffer than needed: two bytes written.
        #expect(bench.raw(good, responseSize: 16).length == 2)
        #expect(bench.request(T.requestType.getValue, line: 0) == (T.ok, 0, 2))
    }

    @Test("a request split across descriptors is read whole")
    func splitRequest() throws {
        let bench = try GPIOTestBench()
        let bytes = T.header(T.requestType.getDirection, line: 5, value: 0)
        let a = bench.memory.allocate(3), b = bench.memory.allocate(5), r = bench.memory.allocate(2)
        bench.memory.write(Array(bytes[0..<3]), at: a)
        bench.memory.write(Array(bytes[3...]), at: b)
        bench.requestq.submit([.readable(a, 3), .readable(b, 5), .writable(r, 1), .writable(r + 1, 1)], indirect: true)
        bench.harness.run()
        #expect(bench.requestq.takeUsed().map(\.length) == [2])
        #expect(bench.memory.read(r, count: 2) == [T.ok, 2])
    }

    @Test("SET_IRQ_TYPE: refused without VIRTIO_GPIO_F_IRQ, for unknown triggers, on outputs, and when changing an enabled trigger without NONE")
    func irqTypeRefusals() throws {
        let withoutIRQ = try GPIOTestBench(interrupts: false)
        #expect(withoutIRQ.request(T.requestType.setIRQType, line: 1, value: 1).status == T.error)

        let bench = try GPIOTestBench()
        for bad: UInt32 in [5, 6, 7, 9, 12, 16, 0x101, .max] {
            #expect(bench.request(T.requestType.setIRQType, line: 1, value: bad).status == T.error, "trigger \(bad)")
        }
        bench.request(T.requestType.setDirection, line: 4, value: 1)
        #expect(bench.request(T.requestType.setIRQType, line: 4, value: 1).status == T.error)
        #expect(bench.request(T.requestType.setIRQType, line: 1, value: 1).status == T.ok)
        #expect(bench.request(T.requestType.setIRQType, line: 1, value: 1).status == T.ok)  // the same again
        #expect(bench.request(T.requestType.setIRQType, line: 1, value: 4).status == T.error)
        #expect(bench.request(T.requestType.setIRQType, line: 1, value: 0).status == T.ok)
        #expect(bench.request(T.requestType.setIRQType, line: 1, value: 4).status == T.ok)
        #expect(bench.request(T.requestType.setIRQType, line: 1, value: 0).status == T.ok)
        #expect(bench.request(T.requestType.setIRQType, line: 1, value: 0).status == T.ok)
    }
}

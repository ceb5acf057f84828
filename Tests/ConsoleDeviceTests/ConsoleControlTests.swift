import ConsoleDevice
import Testing
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// The MULTIPORT control handshake, port open/close both ways, and hostile control messages.
@Suite("Console control queues")
struct ConsoleControlTests {
    /// A console whose port 0 logs to a file and whose port 1 ("data") listens on a unix socket.
    struct Bench {
        let driver: ConsoleDriver
        let logPath: String
        let socketPath: String
        var device: ConsoleDevice { driver.device }

        init(extraPorts: Int = 0, maxPorts: Int? = nil, multiport: Bool = true) throws {
            logPath = temporaryPath("log")
            socketPath = temporaryPath("sock")
            var ports = [ConsoleDevice.Port(name: "", endpoint: try HostEndpoint.open(.file(path: logPath))),
                         ConsoleDevice.Port(name: "data", endpoint: try HostEndpoint.open(.unix(path: socketPath)))]
            for i in 0..<extraPorts {
                ports.append(ConsoleDevice.Port(name: "extra\(i)", endpoint: try HostEndpoint.open(.file(path: temporaryPath("x\(i)")))))
            }
            var options = ConsoleDevice.Options()
            options.maxPorts = maxPorts
            driver = try ConsoleDriver(ConsoleDevice(ports: ports, options: options), multiport: multiport)
        }

        func cleanUp() {
            driver.harness.finish()
            unlink(logPath)
            unlink(socketPath)
        }
    }

    @Test("DEVICE_READY adds every port; PORT_READY brings CONSOLE_PORT, RESIZE, PORT_NAME and PORT_OPEN in QEMU's order")
    func handshake() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        let driver = bench.driver
        driver.offerControlBuffers()
        driver.sendControl(0, .deviceReady)
        #expect(driver.receivedControl() == [ConsoleControlMessage(id: 0, event: .deviceAdd, value: 1),
                                             ConsoleControlMessage(id: 1, event: .deviceAdd, value: 1)])
        driver.sendControl(0, .portReady)
        #expect(driver.receivedControl() == [ConsoleControlMessage(id: 0, event: .consolePort, value: 1),
                                             .resize(id: 0, cols: 80, rows: 24),
                                             ConsoleControlMessage(id: 0, event: .portOpen, value: 1)])
        // Port 1's unix backend has no client yet: named, but not open.
        driver.sendControl(1, .portReady)
        #expect(driver.receivedControl() == [.name(id: 1, "data")])
        #expect(ConsoleControlMessage.name(id: 1, "data").bytes == [1, 0, 0, 0, 7, 0, 1, 0] + Array("data".utf8) + [0])
        #expect(ConsoleControlMessage.resize(id: 0, cols: 80, rows: 24).bytes == [0, 0, 0, 0, 5, 0, 0, 0, 80, 0, 24, 0])
        // A repeated PORT_READY changes nothing.
        driver.sendControl(1, .portReady)
        #expect(driver.receivedControl().isEmpty)
        #expect(bench.device.recentErrors.isEmpty)
    }

    @Test("a host client attaching opens the port; leaving closes it once its input reached the guest")
    func hostOpenClose() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        let driver = bench.driver
        driver.handshake()
        let client = try connectUnix(bench.socketPath)
        #expect(driver.turn { driver.receivedControl() == [ConsoleControlMessage(id: 1, event: .portOpen, value: 1)] })
        // Input the client sent just before leaving reaches the guest before PORT_OPEN 0 does.
        #expect(writeAll(client.rawValue, Array("bye".utf8)))
        _ = consume client
        var control: [ConsoleControlMessage] = []
        driver.turn(until: { control += driver.receivedControl(); return false }, timeoutMilliseconds: 200)
        #expect(!control.contains(ConsoleControlMessage(id: 1, event: .portOpen, value: 0)))
        #expect(driver.receive(port: 1, expected: 3) == Array("bye".utf8))
        #expect(driver.turn {
            control += driver.receivedControl()
            return control.contains(ConsoleControlMessage(id: 1, event: .portOpen, value: 0))
        })
        // A new client opens it again.
        let again = try connectUnix(bench.socketPath)
        #expect(driver.turn { driver.receivedControl().contains(ConsoleControlMessage(id: 1, event: .portOpen, value: 1)) })
        _ = again
    }

    @Test("the guest's PORT_OPEN gates input: nothing is given to a closed port, and nothing is lost")
    func guestOpenGatesInput() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        let driver = bench.driver
        driver.handshake(open: false)
        let client = try connectUnix(bench.socketPath)
        #expect(driver.turn { driver.receivedControl().contains(ConsoleControlMessage(id: 1, event: .portOpen, value: 1)) })
        #expect(writeAll(client.rawValue, Array("early".utf8)))
        #expect(driver.receive(port: 1, expected: 5, timeoutMilliseconds: 200).isEmpty)
        driver.sendControl(1, .portOpen, 1)
        #expect(driver.receive(port: 1, expected: 5) == Array("early".utf8))
        // The guest closes it again: input waits.
        driver.sendControl(1, .portOpen, 0)
        #expect(writeAll(client.rawValue, Array("late".utf8)))
        #expect(driver.receive(port: 1, expected: 4, timeoutMilliseconds: 200).isEmpty)
    }

    @Test("hostile control messages: a clear error each, and the device keeps serving")
    func hostileControlMessages() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        let driver = bench.driver
        driver.offerControlBuffers()
        // Before DEVICE_READY: PORT_READY for a port not added.
        driver.sendControl(0, .portReady)
        driver.post(VirtioConsole.controlTransmitQueue, [1, 2, 3])  // short
        driver.post(VirtioConsole.controlTransmitQueue, [])
        driver.sendControl(ConsoleControlMessage(id: 0, rawEvent: 99, value: 1))  // unknown event
        driver.sendControl(0, .deviceReady, 0)  // the driver failed
        #expect(driver.receivedControl().isEmpty)
        driver.sendControl(0, .deviceReady)
        #expect(driver.receivedControl().count == 2)
        driver.sendControl(7, .portReady)  // unknown port id
        driver.sendControl(0xffff_ffff, .portOpen)
        driver.sendControl(1, .portReady, 0)  // the driver failed to add it
        driver.sendControl(0, .deviceAdd)  // device-to-driver events
        driver.sendControl(0, .resize)
        driver.sendControl(0, .portName)
        driver.sendControl(0, .consolePort)
        driver.sendControl(0, .deviceRemove)
        driver.sendControl(0, .portOpen, 2)
        #expect(driver.receivedControl().isEmpty)
        let errors = bench.device.recentErrors
        #expect(errors.count == 14, "\(errors)")
        #expect(errors.contains { $0.contains("which the device did not add") })
        #expect(errors.contains { $0.contains("needs 8") })
        #expect(errors.contains { $0.contains("unknown event 99") })
        #expect(errors.contains { $0.contains("DEVICE_READY 0") })
        #expect(errors.contains { $0.contains("port 7") })
        #expect(errors.contains { $0.contains("port 4294967295") })
        #expect(errors.contains { $0.contains("PORT_READY 0") })
        #expect(errors.contains { $0.contains("RESIZE for port 0 goes from the device to the driver") })
        #expect(errors.contains { $0.contains("PORT_OPEN 2") })
        // Every chain came back, and a proper PORT_READY still works.
        #expect(driver.queue(VirtioConsole.controlTransmitQueue).publishedUsedIndex == 15)
        driver.sendControl(0, .portReady)
        #expect(driver.receivedControl().first == ConsoleControlMessage(id: 0, event: .consolePort, value: 1))
    }

    @Test("a control buffer too small for a message: an error, the message dropped, the next buffer used")
    func smallControlBuffer() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        let driver = bench.driver
        driver.offer(VirtioConsole.controlReceiveQueue, size: 4)
        driver.sendControl(0, .deviceReady)
        let first = driver.used(VirtioConsole.controlReceiveQueue)
        #expect(first == [[]])
        #expect(bench.device.recentErrors.last?.contains("cannot hold") == true)
        driver.offerControlBuffers(4)
        #expect(driver.receivedControl() == [ConsoleControlMessage(id: 1, event: .deviceAdd, value: 1)])
    }

    @Test("ports beyond the configured ones: max_nr_ports queues exist, their traffic is returned empty")
    func unusedPortQueues() throws {
        let bench = try Bench(maxPorts: 4)
        defer { bench.cleanUp() }
        #expect(bench.device.queueCount == 10)
        #expect(bench.device.readConfig(offset: 4, count: 4) == [4, 0, 0, 0])
        let driver = bench.driver
        driver.post(VirtioConsole.transmitQueue(port: 3), Array("nobody".utf8))
        driver.run()
        #expect(driver.used(VirtioConsole.transmitQueue(port: 3)) == [[]])
    }

    @Test("reset: the handshake starts again from DEVICE_READY")
    func resetForgetsHandshake() throws {
        let bench = try Bench()
        defer { bench.cleanUp() }
        let driver = bench.driver
        driver.handshake()
        bench.device.statusChanged(0)
        driver.run()
        driver.sendControl(0, .portReady)
        #expect(bench.device.recentErrors.last?.contains("did not add") == true)
        driver.offerControlBuffers(4)
        driver.sendControl(0, .deviceReady)
        #expect(driver.receivedControl().count == 2)
    }

    @Test("without MULTIPORT: port 0 on queues 0 and 1, no handshake, control traffic refused")
    func singlePort() throws {
        let bench = try Bench(multiport: false)
        defer { bench.cleanUp() }
        let driver = bench.driver
        driver.transmit(port: 0, Array("plain console\n".utf8))
        let log = open(bench.logPath, O_RDONLY)
        defer { close(log) }
        #expect(readFile(log) == Array("plain console\n".utf8))
        driver.sendControl(0, .deviceReady)
        #expect(bench.device.recentErrors.last?.contains("without MULTIPORT") == true)
    }
}

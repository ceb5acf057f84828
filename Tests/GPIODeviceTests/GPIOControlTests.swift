import Testing
import VhostUserKit
import VhostUserTesting
@testable import GPIODevice

private typealias T = GPIOTestBench

@Suite("the simulated chip: its layout, its control protocol and its control socket")
struct GPIOControlTests {
    @Test("layouts: names padded to the line count; bad counts, duplicate names, unknown or twice-wired lines refused")
    func layouts() throws {
        let layout = try SimulatedChipLayout(lineCount: 4, names: ["a", "b"], loopbacks: [(0, 3)], busy: [2])
        #expect(layout.names == ["a", "b", "", ""])
        #expect(layout.partner(of: 3) == 0 && layout.partner(of: 0) == 3 && layout.partner(of: 1) == nil)
        #expect(throws: LayoutError.lineCount(0)) { try SimulatedChipLayout(lineCount: 0) }
        #expect(throws: LayoutError.lineCount(65536)) { try SimulatedChipLayout(lineCount: 65536) }
        #expect(throws: LayoutError.tooManyNames(3, 2)) { try SimulatedChipLayout(lineCount: 2, names: ["a", "b", "c"]) }
        #expect(throws: LayoutError.duplicateName("a")) { try SimulatedChipLayout(lineCount: 2, names: ["a", "a"]) }
        #expect(throws: LayoutError.noSuchLine(4)) { try SimulatedChipLayout(lineCount: 4, loopbacks: [(1, 4)]) }
        #expect(throws: LayoutError.wiredTwice(1)) { try SimulatedChipLayout(lineCount: 4, loopbacks: [(0, 1), (1, 2)]) }
        #expect(throws: LayoutError.wiredTwice(2)) { try SimulatedChipLayout(lineCount: 4, loopbacks: [(2, 2)]) }
        #expect(throws: LayoutError.noSuchLine(-1)) { try SimulatedChipLayout(lineCount: 4, busy: [-1]) }
        #expect(try SimulatedChipLayout.parsePair("2-3") == (2, 3))
        for bad in ["2", "2-", "-3", "a-b", "1-2-3", ""] {
            #expect(throws: LayoutError.badPair(bad)) { try SimulatedChipLayout.parsePair(bad) }
        }
    }

    @Test("control commands: set, get and direction by number or name; anything else refused")
    func commands() throws {
        #expect(try ControlCommand.parse("set 3 1") == .set(.number(3), true))
        #expect(try ControlCommand.parse("set button 0\r") == .set(.name("button"), false))
        #expect(try ControlCommand.parse("  get\tled ") == .get(.name("led")))
        #expect(try ControlCommand.parse("direction 0") == .direction(.number(0)))
        #expect(throws: ControlCommandError.empty) { try ControlCommand.parse("") }
        #expect(throws: ControlCommandError.unknown("toggle")) { try ControlCommand.parse("toggle 1") }
        #expect(throws: ControlCommandError.usage("set")) { try ControlCommand.parse("set 1") }
        #expect(throws: ControlCommandError.usage("get")) { try ControlCommand.parse("get 1 2") }
        #expect(throws: ControlCommandError.badLevel("2")) { try ControlCommand.parse("set 1 2") }
    }

    @Test("the control socket drives an input: the guest reads it, and a rising edge fires the line's interrupt")
    func controlSocketRaisesInterrupt() throws {
        let bench = try GPIOTestBench(control: true)
        let socket = try bench.connectControl()
        #expect(bench.enable(1, line: 5) == T.ok)
        let b = bench.queueEvent(line: 5)
        #expect(try bench.control("get 5", on: socket) == "0")
        #expect(try bench.control("direction 5", on: socket) == "in")
        #expect(try bench.control("set 5 1", on: socket) == "ok")
        #expect(bench.firedEvents([b]).map(\.status) == [T.valid])
        #expect(bench.request(T.requestType.getValue, line: 5) == (T.ok, 1, 2))
        // By name; an output's level is what the guest drives.
        #expect(try bench.control("set button 1", on: socket) == "ok")
        #expect(bench.request(T.requestType.getValue, line: 1) == (T.ok, 1, 2))
        bench.request(T.requestType.setDirection, line: 4, value: 1)
        bench.request(T.requestType.setValue, line: 4, value: 1)
        #expect(try bench.control("get 4", on: socket) == "1")
        #expect(try bench.control("direction 4", on: socket) == "out")
    }

    @Test("control errors are replied and the connection goes on; an overlong line closes it; other connections are served")
    func controlErrors() throws {
        let bench = try GPIOTestBench(control: true)
        let socket = try bench.connectControl()
        #expect(try bench.control("set 9 1", on: socket) == "error: no line \"9\"")
        #expect(try bench.control("get nosuch", on: socket) == "error: no line \"nosuch\"")
        #expect(try bench.control("set 7 1", on: socket) == "error: line 7 is in use on the host")
        #expect(try bench.control("frobnicate", on: socket).hasPrefix("error: unknown command"))
        #expect(try bench.control("get 0", on: socket) == "0")
        let second = try bench.connectControl()
        #expect(try bench.control(String(repeating: "x", count: 300), on: second).hasPrefix("error: command longer"))
        #expect(throws: TestError.self) { try bench.control("get 0", on: second) }
        #expect(try bench.control("get 0", on: socket) == "0")
    }
}

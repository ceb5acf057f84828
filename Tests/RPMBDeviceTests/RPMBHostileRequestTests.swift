import Testing
import VhostUserKit
import VhostUserTesting
@testable import RPMBDevice

/// Malformed chains and frames from a hostile or broken driver: the right result code, or an empty
/// completion when there is no room for one, and the device keeps serving.
@Suite("vhost-user-rpmb: malformed requests")
struct RPMBHostileRequestTests {
    func keyedDriver(limits: RPMBDevice.Limits = .init(maxWriteBlocks: 2, maxReadBlocks: 2)) throws -> RPMBDriver {
        let d = try RPMBDriver(image: try MemoryImageFile.formatted(), limits: limits)
        #expect(d.programKey().result == ResultCode.ok)
        return d
    }

    /// The device still serves a good request.
    func stillServes(_ d: RPMBDriver) {
        let (r, nonce) = d.counter()
        #expect(r.result == ResultCode.ok)
        #expect(r.nonce == nonce)
        #expect(d.macIsValid([r]))
    }

    @Test("request lengths that are not whole frames get one GENERAL_FAILURE frame", arguments: [1, 511, 513, 1000, 1025])
    func partialFrames(length: Int) throws {
        let d = try keyedDriver()
        let r = d.exchange([], responseBytes: 512, raw: [UInt8](repeating: 0, count: length))
        #expect(r.length == 512)
        #expect(r.frames[0].result == ResultCode.general)
        stillServes(d)
    }

    @Test("no request frame at all, and more frames than any request may carry")
    func frameCounts() throws {
        let d = try keyedDriver()
        let none = d.exchange([], responseBytes: 512)
        #expect(none.length == 512)
        #expect(none.frames[0].result == ResultCode.general)
        let many = d.exchange((0..<10).map { _ in Frame(type: RequestType.write, blockCount: 10) }, responseBytes: 512)
        #expect(many.frames[0].result == ResultCode.general)
        #expect(d.counter().response.counter == 0)
        stillServes(d)
    }

    @Test("unknown request types (0, response codes, 6, 0xFFFF) get GENERAL_FAILURE", arguments: [UInt16(0), 0x0100, 0x0300, 6, 0xFFFF])
    func unknownTypes(type: UInt16) throws {
        let d = try keyedDriver()
        let r = d.exchange([Frame(type: type)], responseBytes: 512)
        #expect(r.length == 512)
        #expect(r.frames[0].result == ResultCode.general)
        stillServes(d)
    }

    @Test("a write whose frame count does not match its block count, or whose frames mix types, changes nothing")
    func writeShape() throws {
        let d = try keyedDriver()
        var frames = d.writeFrames(address: 0, blocks: [RPMBDriver.block(1), RPMBDriver.block(2)], counter: 0)
        // Block count 2 but one frame.
        #expect(d.exchange([frames[0], Frame(type: RequestType.resultRead)], responseBytes: 512).frames[0].result == ResultCode.general)
        // A frame of another type in the middle.
        frames[1].type = RequestType.read
        #expect(d.exchange(d.sign(frames) + [Frame(type: RequestType.resultRead)], responseBytes: 512).frames[0].result == ResultCode.general)
        // A trailing frame that is not RESULT_READ.
        let good = d.writeFrames(address: 0, blocks: [RPMBDriver.block(1)], counter: 0)
        #expect(d.exchange(good + [Frame(type: RequestType.getCounter)], responseBytes: 512).frames[0].result == ResultCode.general)
        #expect(d.counter().response.counter == 0)
        #expect(d.read(address: 0, count: 1).frames[0].data == [UInt8](repeating: 0, count: 256))
        stillServes(d)
    }

    @Test("response buffers too small: an empty completion, or one GENERAL_FAILURE frame for a read")
    func responseTooSmall() throws {
        let d = try keyedDriver()
        #expect(d.exchange([Frame(type: RequestType.getCounter)], responseBytes: 511).length == 0)
        #expect(d.exchange([Frame(type: RequestType.getCounter)], responseBytes: 0).length == 0)
        #expect(d.exchange([Frame(type: RequestType.resultRead)], responseBytes: 100).length == 0)
        let read = d.read(address: 0, count: 2, room: 1)
        #expect(read.length == 512)
        #expect(read.frames[0].result == ResultCode.general)
        // A write asking for its result without room for it is still done; its result is readable later.
        let w = d.exchange(d.writeFrames(address: 0, blocks: [RPMBDriver.block(1)], counter: 0) + [Frame(type: RequestType.resultRead)],
                           responseBytes: 0)
        #expect(w.length == 0)
        let later = d.exchange([Frame(type: RequestType.resultRead)], responseBytes: 512).frames[0]
        #expect(later.type == 0x0300)
        #expect(later.result == ResultCode.ok)
        #expect(later.counter == 1)
        stillServes(d)
    }

    @Test("GET_WRITE_COUNTER and RESULT_READ with a block count other than 1 get GENERAL_FAILURE")
    func singleFrameBlockCounts() throws {
        let d = try keyedDriver()
        let counter = d.exchange([Frame(type: RequestType.getCounter, blockCount: 2)], responseBytes: 512).frames[0]
        #expect(counter.result == ResultCode.general)
        #expect(d.macIsValid([counter]))
        #expect(d.exchange([Frame(type: RequestType.resultRead, blockCount: 0)], responseBytes: 512).frames[0].result == ResultCode.general)
        // A write with such a RESULT_READ is refused as a whole.
        let w = d.exchange(d.writeFrames(address: 0, blocks: [RPMBDriver.block(1)], counter: 0)
                           + [Frame(type: RequestType.resultRead, blockCount: 7)], responseBytes: 512)
        #expect(w.frames[0].result == ResultCode.general)
        #expect(d.counter().response.counter == 0)
    }

    @Test("frames split across many small descriptors are read whole")
    func scatteredFrames() throws {
        let d = try keyedDriver()
        let bytes = d.writeFrames(address: 4, blocks: [RPMBDriver.block(3)], counter: 0).flatMap(\.bytes) + Frame(type: RequestType.resultRead).bytes
        let m = d.harness.memory
        var buffers: [BufferSpec] = []
        for start in stride(from: 0, to: bytes.count, by: 100) {
            let piece = Array(bytes[start..<min(start + 100, bytes.count)])
            let a = m.allocate(piece.count)
            m.write(piece, at: a)
            buffers.append(.readable(a, piece.count))
        }
        let w1 = m.allocate(300), w2 = m.allocate(212)
        buffers += [.writable(w1, 300), .writable(w2, 212)]
        d.queue.submit(buffers, indirect: true)
        d.harness.run()
        #expect(d.queue.takeUsed().map(\.length) == [512])
        let response = Frame(m.read(w1, count: 300) + m.read(w2, count: 212))
        #expect(response.result == ResultCode.ok)
        #expect(d.macIsValid([response]))
        #expect(d.read(address: 4, count: 1).frames[0].data == RPMBDriver.block(3))
    }
}

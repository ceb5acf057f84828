import Testing
import VhostUserKit
import VhostUserTesting
@testable import RPMBDevice

@Suite("virtio-rpmb requests (virtio 1.2, 5.12.6)")
struct RPMBRequestTests {
    @Test("the device is virtio id 28 with one queue and the config the options give")
    func identityAndConfig() throws {
        let device = try RPMBDevice(image: try RPMBImage(file: try MemoryImageFile.formatted(units: 3)),
                                    limits: .init(maxWriteBlocks: 5, maxReadBlocks: 9), logger: quietLogger)
        #expect(device.virtioDeviceID == 28)
        #expect(device.queueCount == 1)
        #expect(device.configSize == 3)
        #expect(device.readConfig(offset: 0, count: 3) == [3, 5, 9])
        #expect(device.readConfig(offset: 2, count: 1) == [9])
        #expect(device.deviceFeatures == 0)
    }

    @Test("PROGRAM_KEY programs the key once; a second one gets WRITE_FAILURE and the first key stays")
    func keyProgrammedOnce() throws {
        let d = try RPMBDriver(image: try MemoryImageFile.formatted())
        let first = d.programKey()
        #expect(first.type == 0x0100)
        #expect(first.result == ResultCode.ok)
        let other = (0..<32).map { UInt8(255 - $0) }
        let second = d.programKey(other)
        #expect(second.type == 0x0100)
        #expect(second.result == ResultCode.writeFailure)
        // The first key still authenticates: the counter's MAC is made with it.
        let (counter, _) = d.counter()
        #expect(counter.result == ResultCode.ok)
        #expect(d.macIsValid([counter]))
    }

    @Test("PROGRAM_KEY without RESULT_READ returns nothing; a separate RESULT_READ returns its result")
    func resultReadSeparately() throws {
        let d = try RPMBDriver(image: try MemoryImageFile.formatted())
        let r = d.exchange([Frame(type: RequestType.programKey, keyOrMAC: d.key)], responseBytes: 0)
        #expect(r.length == 0)
        let result = d.exchange([Frame(type: RequestType.resultRead)], responseBytes: 512)
        #expect(result.length == 512)
        #expect(result.frames[0].type == 0x0100)
        #expect(result.frames[0].result == ResultCode.ok)
    }

    @Test("PROGRAM_KEY with a block count other than 1 gets GENERAL_FAILURE and programs nothing")
    func keyBlockCount() throws {
        let d = try RPMBDriver(image: try MemoryImageFile.formatted())
        let r = d.exchange([Frame(type: RequestType.programKey, blockCount: 2, keyOrMAC: d.key), Frame(type: RequestType.resultRead)],
                           responseBytes: 512)
        #expect(r.frames[0].result == ResultCode.general)
        #expect(d.counter().response.result == ResultCode.noKey)
    }

    @Test("without a key: GET_WRITE_COUNTER, DATA_WRITE and DATA_READ get NO_AUTH_KEY")
    func noKey() throws {
        let d = try RPMBDriver(image: try MemoryImageFile.formatted())
        let (counter, nonce) = d.counter()
        #expect(counter.type == 0x0200)
        #expect(counter.result == ResultCode.noKey)
        #expect(counter.nonce == nonce)
        #expect(d.write(address: 0, blocks: [RPMBDriver.block(1)], counter: 0).result == ResultCode.noKey)
        let read = d.read(address: 0, count: 1)
        #expect(read.frames[0].type == 0x0400)
        #expect(read.frames[0].result == ResultCode.noKey)
    }

    @Test("GET_WRITE_COUNTER returns the counter and the nonce under a valid MAC")
    func counterRead() throws {
        let d = try RPMBDriver(image: try MemoryImageFile.formatted())
        _ = d.programKey()
        let (r, nonce) = d.counter()
        #expect(r.type == 0x0200)
        #expect(r.result == ResultCode.ok)
        #expect(r.counter == 0)
        #expect(r.nonce == nonce)
        #expect(d.macIsValid([r]))
        // A MAC made with another key does not match.
        #expect(r.mac != referenceMAC(key: [UInt8](repeating: 1, count: 32), [r]))
    }

    @Test("an authenticated write stores the data and increments the counter; the result frame is signed")
    func writeIncrementsCounter() throws {
        let d = try RPMBDriver(image: try MemoryImageFile.formatted())
        _ = d.programKey()
        let r = d.write(address: 7, blocks: [RPMBDriver.block(1)], counter: 0)
        #expect(r.type == 0x0300)
        #expect(r.result == ResultCode.ok)
        #expect(r.counter == 1)
        #expect(r.address == 7)
        #expect(d.macIsValid([r]))
        #expect(d.counter().response.counter == 1)
        let read = d.read(address: 7, count: 1)
        #expect(read.frames[0].result == ResultCode.ok)
        #expect(read.frames[0].data == RPMBDriver.block(1))
        #expect(d.write(address: 8, blocks: [RPMBDriver.block(2)], counter: 1).counter == 2)
    }

    @Test("a replayed write frame gets COUNTER_FAILURE and changes nothing")
    func replay() throws {
        let d = try RPMBDriver(image: try MemoryImageFile.formatted())
        _ = d.programKey()
        let frames = d.writeFrames(address: 3, blocks: [RPMBDriver.block(1)], counter: 0)
        let result = [Frame(type: RequestType.resultRead)]
        #expect(d.exchange(frames + result, responseBytes: 512).frames[0].result == ResultCode.ok)
        _ = d.write(address: 3, blocks: [RPMBDriver.block(2)], counter: 1)
        let replayed = d.exchange(frames + result, responseBytes: 512).frames[0]
        #expect(replayed.result == ResultCode.counter)
        #expect(replayed.counter == 2)
        #expect(d.read(address: 3, count: 1).frames[0].data == RPMBDriver.block(2))
    }

    @Test("a write with a bad MAC gets AUTH_FAILURE; neither data nor counter change")
    func badMAC() throws {
        let d = try RPMBDriver(image: try MemoryImageFile.formatted())
        _ = d.programKey()
        var frames = d.writeFrames(address: 0, blocks: [RPMBDriver.block(1)], counter: 0)
        frames[0].bytes[300] ^= 1   // the data changed after signing
        let r = d.exchange(frames + [Frame(type: RequestType.resultRead)], responseBytes: 512).frames[0]
        #expect(r.result == ResultCode.auth)
        #expect(r.counter == 0)
        #expect(d.read(address: 0, count: 1).frames[0].data == [UInt8](repeating: 0, count: 256))
        // Signed with another key: refused as well.
        d.key = [UInt8](repeating: 9, count: 32)
        #expect(d.write(address: 0, blocks: [RPMBDriver.block(1)], counter: 0).result == ResultCode.auth)
    }

    @Test("addresses beyond the capacity get ADDR_FAILURE, for writes and reads")
    func addressRange() throws {
        let d = try RPMBDriver(image: try MemoryImageFile.formatted(units: 1))   // 512 blocks
        _ = d.programKey()
        #expect(d.write(address: 512, blocks: [RPMBDriver.block(1)], counter: 0).result == ResultCode.address)
        #expect(d.write(address: 511, blocks: [RPMBDriver.block(1), RPMBDriver.block(2)], counter: 0).result == ResultCode.address)
        #expect(d.write(address: 511, blocks: [RPMBDriver.block(1)], counter: 0).result == ResultCode.ok)
        #expect(d.read(address: 0xFFFF, count: 1).frames[0].result == ResultCode.address)
        let r = d.read(address: 510, count: 4)
        #expect(r.frames.count == 1)
        #expect(r.frames[0].result == ResultCode.address)
        #expect(d.macIsValid([r.frames[0]]))
    }

    @Test("a multi-block write and a multi-block read: data, nonce and address in every frame, one MAC over all")
    func multiBlock() throws {
        let d = try RPMBDriver(image: try MemoryImageFile.formatted(), limits: .init(maxWriteBlocks: 4, maxReadBlocks: 6))
        _ = d.programKey()
        let blocks = (1...4).map(RPMBDriver.block)
        #expect(d.write(address: 100, blocks: blocks, counter: 0).result == ResultCode.ok)
        let r = d.read(address: 99, count: 6)
        #expect(r.length == 6 * 512)
        #expect(r.frames.map(\.data) == [[UInt8](repeating: 0, count: 256)] + blocks + [[UInt8](repeating: 0, count: 256)])
        for f in r.frames {
            #expect(f.type == 0x0400)
            #expect(f.result == ResultCode.ok)
            #expect(f.nonce == r.nonce)
            #expect(f.address == 99)
            #expect(f.blockCount == 6)
        }
        #expect(d.macIsValid(r.frames))
        // The MAC covers every frame: it is not the MAC of the last frame alone.
        #expect(r.frames.last!.mac != referenceMAC(key: d.key, [r.frames.last!]))
    }

    @Test("block counts of 0 or beyond max_wr_cnt / max_rd_cnt get GENERAL_FAILURE")
    func blockCountLimits() throws {
        let d = try RPMBDriver(image: try MemoryImageFile.formatted(), limits: .init(maxWriteBlocks: 2, maxReadBlocks: 3))
        _ = d.programKey()
        #expect(d.write(address: 0, blocks: (1...3).map(RPMBDriver.block), counter: 0).result == ResultCode.general)
        var zero = d.writeFrames(address: 0, blocks: [RPMBDriver.block(1)], counter: 0)
        zero[0].blockCount = 0
        zero = d.sign(zero)
        #expect(d.exchange(zero + [Frame(type: RequestType.resultRead)], responseBytes: 512).frames[0].result == ResultCode.general)
        #expect(d.read(address: 0, count: 4).frames[0].result == ResultCode.general)
        #expect(d.read(address: 0, count: 0, room: 1).frames[0].result == ResultCode.general)
        #expect(d.counter().response.counter == 0)
        #expect(d.read(address: 0, count: 3).frames.count == 3)
    }

    @Test("a counter at its maximum: writes get WRITE_COUNTER_EXPIRED, the counter reads with the expired bit")
    func counterExpiry() throws {
        let key = (0..<32).map { UInt8($0 * 7 + 3) }
        let d = try RPMBDriver(image: try MemoryImageFile.formatted(key: key, counter: .max - 1))
        let last = d.write(address: 0, blocks: [RPMBDriver.block(1)], counter: .max - 1)
        #expect(last.result == ResultCode.ok)
        #expect(last.counter == .max)
        let refused = d.write(address: 1, blocks: [RPMBDriver.block(2)], counter: .max)
        #expect(refused.result == ResultCode.expired)
        #expect(refused.counter == .max)
        let (counter, _) = d.counter()
        #expect(counter.result == ResultCode.expired)
        #expect(counter.counter == .max)
        #expect(d.macIsValid([counter]))
        #expect(d.read(address: 1, count: 1).frames[0].data == [UInt8](repeating: 0, count: 256))
    }

    @Test("every request through a daemon, in every front-end's message order", arguments: FrontendProfile.allCases)
    func throughTheDaemon(profile: FrontendProfile) throws {
        let device = try RPMBDevice(image: try RPMBImage(file: try MemoryImageFile.formatted()), logger: quietLogger)
        let f = try DeviceFixture(device, profile: profile, queueSizes: [16])
        let key = (0..<32).map { UInt8($0) }
        func exchange(_ request: [Frame], room: Int) throws -> [Frame] {
            let r = f.memory.allocate(request.count * 512), w = f.memory.allocate(max(room, 1) * 512)
            f.memory.write(request.flatMap(\.bytes), at: r)
            var buffers = [BufferSpec.readable(r, request.count * 512)]
            if room > 0 { buffers.append(.writable(w, room * 512)) }
            f.queue.submit(buffers, indirect: true)
            f.queue.notifyDevice()
            let used = try f.queue.waitForUsed(1)
            #expect(used[0].length == UInt32(room * 512))
            return stride(from: 0, to: room * 512, by: 512).map { Frame(f.memory.read(w + UInt64($0), count: 512)) }
        }
        #expect(try exchange([Frame(type: 1, keyOrMAC: key), Frame(type: 5)], room: 1)[0].result == 0)
        var write = Frame(type: 3, address: 2, counter: 0, data: RPMBDriver.block(5))
        write.mac = referenceMAC(key: key, [write])
        let written = try exchange([write, Frame(type: 5)], room: 1)[0]
        #expect(written.result == 0)
        #expect(written.counter == 1)
        let read = try exchange([Frame(type: 4, blockCount: 1, address: 2, nonce: [7, 7, 7])], room: 1)[0]
        #expect(read.data == RPMBDriver.block(5))
        #expect(read.mac == referenceMAC(key: key, [read]))
    }
}

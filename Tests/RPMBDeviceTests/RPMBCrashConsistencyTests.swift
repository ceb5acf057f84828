import Testing
@testable import RPMBDevice

/// The image's two-step commit (virtio 1.2, 5.12.6.4: key and counter kept across reset and reboot) under
/// every crash a write can suffer: the file rebuilt as it stood after each recorded step, and with the
/// step in flight torn, must open to exactly the old or exactly the new state.
@Suite("vhost-user-rpmb image: crash consistency")
struct RPMBCrashConsistencyTests {
    static let key = (0..<32).map { UInt8($0 * 7 + 3) }

    /// What a reader of the device sees: the counter, whether a key is set, and the data.
    struct State: Equatable {
        var counter: UInt32
        var hasKey: Bool
        var data: [UInt8]
    }

    static func state(of bytes: [UInt8]) throws -> State {
        let image = try RPMBImage(file: MemoryImageFile(bytes: bytes))
        let frames = UnsafeMutableRawPointer.allocate(byteCount: image.blockCount * RPMBFrame.size, alignment: 16)
        defer { frames.deallocate() }
        try image.read(address: 0, blocks: image.blockCount, frames: frames)
        var data: [UInt8] = []
        for i in 0..<image.blockCount {
            data += UnsafeRawBufferPointer(start: frames + i * RPMBFrame.size + RPMBFrame.Offset.data, count: RPMBFrame.blockSize)
        }
        return State(counter: image.writeCounter, hasKey: image.key != nil, data: data)
    }

    /// `before` with `steps[0..<count]` applied, and the file as every torn version of step `count` leaves it.
    static func crashImages(_ before: [UInt8], _ steps: [MemoryImageFile.Step]) -> [(String, [UInt8])] {
        var images: [(String, [UInt8])] = []
        var bytes = before
        for (index, step) in steps.enumerated() {
            images.append(("before step \(index)", bytes))
            guard case let .write(offset, data) = step else { continue }
            // Torn: only a prefix of the write reached the disk (a sector, half, all but the last byte).
            for torn in [1, 512, data.count / 2, data.count - 1] where torn > 0 && torn < data.count {
                var partial = bytes
                partial.replaceSubrange(offset..<offset + torn, with: data[0..<torn])
                images.append(("step \(index) torn at \(torn) of \(data.count)", partial))
            }
            bytes.replaceSubrange(offset..<offset + data.count, with: data)
        }
        images.append(("after every step", bytes))
        return images
    }

    /// Runs `operation` on a device over `file`, and checks every crash image of its steps.
    static func checkEveryCrash(file: MemoryImageFile, expectSteps: Int, _ operation: (RPMBDriver) -> Void) throws {
        let driver = try RPMBDriver(image: file)
        let before = file.bytes
        let old = try state(of: before)
        file.forgetSteps()
        operation(driver)
        let steps = file.steps
        let new = try state(of: file.bytes)
        #expect(old != new)
        #expect(steps.count == expectSteps)
        // Ordered writes: every write is followed by its sync before anything else is written.
        for (i, step) in steps.enumerated() where i % 2 == 1 { #expect(step == .sync) }
        for (name, image) in crashImages(before, steps) {
            let recovered = try state(of: image)
            #expect(recovered == old || recovered == new, "crash \(name): neither the old nor the new state")
            // Recovery is idempotent: the recovered image opens to the same state again.
            let reopened = MemoryImageFile(bytes: image)
            _ = try RPMBImage(file: reopened)
            #expect(try state(of: reopened.bytes) == recovered, "crash \(name): a second recovery changed the state")
        }
    }

    @Test("a crash anywhere in an authenticated multi-block write leaves the old or the new state")
    func writeCrash() throws {
        let file = try MemoryImageFile.formatted(key: Self.key)
        let driver = try RPMBDriver(image: file)
        #expect(driver.write(address: 0, blocks: [RPMBDriver.block(1)], counter: 0).result == ResultCode.ok)
        // The next write goes to the other slot, the one after to this slot again: check both.
        for (counter, address) in [(UInt32(1), UInt16(10)), (2, 11), (3, 200)] {
            try Self.checkEveryCrash(file: file, expectSteps: 4) { d in
                let blocks = (0..<3).map { RPMBDriver.block(Int(counter) * 10 + $0) }
                #expect(d.write(address: address, blocks: blocks, counter: counter).result == ResultCode.ok)
            }
        }
    }

    @Test("a crash anywhere in PROGRAM_KEY leaves no key or the key")
    func keyCrash() throws {
        try Self.checkEveryCrash(file: try MemoryImageFile.formatted(), expectSteps: 2) { d in
            #expect(d.programKey().result == ResultCode.ok)
        }
    }

    @Test("a failed write or sync answers WRITE_FAILURE, and the image refuses requests until it is reopened")
    func ioErrorFailsStop() throws {
        let file = try MemoryImageFile.formatted(key: Self.key)
        let d = try RPMBDriver(image: file)
        file.failing = true
        #expect(d.write(address: 0, blocks: [RPMBDriver.block(1)], counter: 0).result == ResultCode.writeFailure)
        file.failing = false
        #expect(d.write(address: 0, blocks: [RPMBDriver.block(1)], counter: 0).result == ResultCode.writeFailure)
        #expect(d.read(address: 0, count: 1).frames[0].result == ResultCode.readFailure)
        #expect(d.counter().response.result == ResultCode.general)
        // Reopened, the image works again, in its old state.
        let again = try RPMBDriver(image: file)
        #expect(again.counter().response.counter == 0)
        #expect(again.write(address: 0, blocks: [RPMBDriver.block(1)], counter: 0).result == ResultCode.ok)
    }

    @Test("damaged images are refused with a clear error, not a crash")
    func damagedImages() throws {
        let good = try MemoryImageFile.formatted().bytes
        var badMagic = good; badMagic[0] ^= 0xff
        var badSuper = good; badSuper[12] = 99
        var noSlot = good; noSlot[RPMBImage.slotOffset(1) + 20] ^= 1
        let short = Array(good[0..<1000])
        for (name, bytes) in [("magic", badMagic), ("superblock", badSuper), ("slots", noSlot), ("size", short)] {
            #expect(throws: RPMBImageError.self, "\(name)") { try RPMBImage(file: MemoryImageFile(bytes: bytes)) }
        }
    }
}

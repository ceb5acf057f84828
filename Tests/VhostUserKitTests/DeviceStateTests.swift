import Testing
@testable import VhostUserKit

@Suite struct DeviceStateTests {
    let state = DeviceState(kind: "test", version: 3, payload: [1, 2, 3, 4, 5])

    @Test func roundTripKeepsKindVersionAndPayload() throws {
        #expect(try DeviceState(decoding: state.encoded()) == state)
    }

    @Test func crcMatchesZlib() {
        // zlib.crc32(b"123456789") == 0xCBF43926
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test func everyFlippedBitIsRefused() {
        let bytes = state.encoded()
        for i in bytes.indices {
            var bad = bytes
            bad[i] ^= 0x10
            #expect(throws: DeviceStateError.self) { try DeviceState(decoding: bad) }
        }
    }

    @Test func truncatedAndOverlongStreamsAreRefused() {
        let bytes = state.encoded()
        for n in 0..<bytes.count {
            #expect(throws: DeviceStateError.truncated) { try DeviceState(decoding: Array(bytes[0..<n])) }
        }
        #expect(throws: DeviceStateError.trailingBytes) { try DeviceState(decoding: bytes + [0]) }
    }

    @Test func hostileLengthIsRefusedBeforeAllocating() {
        var w = ByteWriter()
        w.append(Array("VUDStest".utf8))
        w.u16(1)
        w.u32(UInt32.max)
        w.u32(0)
        #expect(throws: DeviceStateError.tooLarge(Int(UInt32.max))) { try DeviceState(decoding: w.bytes) }
    }

    @Test func expectChecksKindAndVersion() throws {
        try state.expect(kind: "test", versions: 1...3)
        #expect(throws: DeviceStateError.wrongDevice(found: "test", expected: "vsck")) {
            try state.expect(kind: "vsck", versions: 1...3)
        }
        #expect(throws: DeviceStateError.unsupportedVersion(3)) { try state.expect(kind: "test", versions: 1...2) }
    }

    @Test func readerThrowsOnShortPayloadAndLeftovers() throws {
        var w = ByteWriter()
        w.u32(7)
        w.bool(true)
        w.u32(2)
        var r = DeviceStateReader(DeviceState(kind: "test", version: 1, payload: w.bytes))
        #expect(try r.u32() == 7)
        #expect(try r.bool())
        #expect(throws: DeviceStateError.invalid("count 2 exceeds 1")) { try r.count(max: 1) }
        #expect(throws: DeviceStateError.truncated) { try r.u64() }
        let leftover = DeviceStateReader(DeviceState(kind: "test", version: 1, payload: [0]))
        #expect(throws: DeviceStateError.trailingBytes) { try leftover.finish() }
    }
}

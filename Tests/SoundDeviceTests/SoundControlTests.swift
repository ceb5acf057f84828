import Testing
import VhostUserKit
import VhostUserTesting
@testable import SoundDevice

private typealias B = SoundTestBench

@Suite("virtio-snd controlq: every request and status")
struct SoundControlTests {
    @Test("config space: jacks, streams, chmaps, controls; features offer VIRTIO_SND_F_CTLS")
    func configSpace() throws {
        let bench = try SoundTestBench()
        #expect(bench.device.readConfig(offset: 0, count: 16) == [2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0])
        #expect(bench.device.deviceFeatures == VirtioSound.featureControls)
        #expect(bench.device.queueGroups == [[0, 1, 2, 3]])
    }

    @Test("PCM_INFO: exactly the configured directions, channels, formats and rates")
    func pcmInfo() throws {
        let bench = try SoundTestBench()
        let (status, items) = bench.query(.pcmInfo, start: 0, count: 2, size: 32)
        #expect(status == B.ok && items.count == 64)
        // Playback: nid 0, formats S16 (bit 5) and S32 (bit 17), rate 48000 (bit 7), output, 1-2 channels.
        #expect(B.u32(items, 0) == 0)
        #expect(items[8..<16].elementsEqual(B.le(UInt64(1 << 5 | 1 << 17))))
        #expect(items[16..<24].elementsEqual(B.le(UInt64(1 << 7))))
        #expect(items[24..<27].elementsEqual([0, 1, 2]))
        // Capture: nid 0 (capture's first), U8 (4), S16 (5), FLOAT (19); 8000 (1) and 48000 (7); input, mono.
        #expect(B.u32(items, 32) == 0)
        #expect(items[40..<48].elementsEqual(B.le(UInt64(1 << 4 | 1 << 5 | 1 << 19))))
        #expect(items[48..<56].elementsEqual(B.le(UInt64(1 << 1 | 1 << 7))))
        #expect(items[56..<59].elementsEqual([1, 1, 1]))
        // A larger item size is padded with zeroes; a smaller one, a range past the end and a short
        // response buffer are BAD_MSG.
        let padded = bench.query(.pcmInfo, start: 1, count: 1, size: 40)
        #expect(padded.status == B.ok && padded.items.count == 40 && padded.items[32...].allSatisfy { $0 == 0 })
        #expect(bench.query(.pcmInfo, start: 0, count: 1, size: 16).status == B.badMessage)
        #expect(bench.query(.pcmInfo, start: 1, count: 2, size: 32).status == B.badMessage)
        #expect(bench.query(.pcmInfo, start: 3, count: 0, size: 32).status == B.badMessage)
        #expect(bench.query(.pcmInfo, start: 0, count: 2, size: 32, responseSize: 40).status == B.badMessage)
    }

    @Test("JACK_INFO and JACK_REMAP; CHMAP_INFO")
    func jacksAndChmaps() throws {
        let bench = try SoundTestBench()
        let jacks = bench.query(.jackInfo, start: 0, count: 2, size: 24)
        #expect(jacks.status == B.ok)
        #expect(B.u32(jacks.items, 4) == VirtioSound.jackFeatureRemap && jacks.items[16] == 1 && jacks.items[40] == 1)
        #expect(B.u32(jacks.items, 8) == 0x0101_4010 && B.u32(jacks.items, 32) == 0x01a1_9020)
        let remap = B.le(B.Code.jackRemap.rawValue)
        #expect(bench.status(remap + B.le(UInt32(1)) + B.le(UInt32(3)) + B.le(UInt32(4))) == B.ok)
        #expect(bench.status(remap + B.le(UInt32(2)) + B.le(UInt32(3)) + B.le(UInt32(4))) == B.badMessage)
        #expect(bench.status(remap + B.le(UInt32(1))) == B.badMessage)
        let chmaps = bench.query(.chmapInfo, start: 0, count: 2, size: 24)
        #expect(chmaps.status == B.ok)
        #expect(chmaps.items[4..<8].elementsEqual([0, 2, 3, 4]))  // output, 2 channels, FL FR
        #expect(chmaps.items[28..<31].elementsEqual([1, 1, 2]))  // input, 1 channel, MONO
    }

    @Test("CTL_INFO, CTL_READ, CTL_WRITE: volume and switch per stream; TLV NOT_SUPP; bad ids and values BAD_MSG")
    func controlElements() throws {
        let bench = try SoundTestBench()
        let info = bench.query(.ctlInfo, start: 0, count: 4, size: 96)
        #expect(info.status == B.ok && info.items.count == 384)
        // Control 0: role VOLUME, type INTEGER, read|write, 1 member, 0...100 step 1, named.
        #expect(B.u32(info.items, 4) == 1 && B.u32(info.items, 8) == 1 && B.u32(info.items, 12) == 3 && B.u32(info.items, 16) == 1)
        #expect(String(decoding: info.items[24..<43], as: UTF8.self) == "PCM Playback Volume")
        #expect(B.u32(info.items, 72) == 0 && B.u32(info.items, 76) == 100 && B.u32(info.items, 80) == 1)
        // Control 3: capture switch, role MUTE, BOOLEAN.
        #expect(B.u32(info.items, 288 + 4) == 2 && B.u32(info.items, 288 + 8) == 0)
        #expect(String(decoding: info.items[(288 + 24)..<(288 + 42)], as: UTF8.self) == "PCM Capture Switch")

        func read(_ id: UInt32) -> (UInt32, UInt32) {
            let (length, response) = bench.control(B.le(B.Code.ctlRead.rawValue) + B.le(id), responseSize: 516)
            return length == 516 ? (B.u32(response, 0), B.u32(response, 4)) : (B.u32(response, 0), .max)
        }
        func write(_ id: UInt32, _ value: UInt32) -> UInt32 {
            bench.status(B.le(B.Code.ctlWrite.rawValue) + B.le(id) + B.le(value) + [UInt8](repeating: 0, count: 508))
        }
        #expect(read(0) == (B.ok, 100) && read(1) == (B.ok, 1))
        #expect(write(0, 40) == B.ok && read(0) == (B.ok, 40))
        #expect(write(1, 0) == B.ok && read(1) == (B.ok, 0))
        #expect(bench.device.status(ofStream: 0).volume == 40 && !bench.device.status(ofStream: 0).soundOn)
        #expect(write(0, 101) == B.badMessage && write(1, 2) == B.badMessage && read(0) == (B.ok, 40))
        #expect(write(4, 1) == B.badMessage)
        #expect(bench.status(B.le(B.Code.ctlWrite.rawValue) + B.le(UInt32(0)) + B.le(UInt32(5))) == B.badMessage)
        #expect(bench.control(B.le(B.Code.ctlRead.rawValue) + B.le(UInt32(0)), responseSize: 100).response[0..<4].elementsEqual(B.le(B.badMessage)))
        #expect(bench.status(B.le(B.Code.ctlEnumItems.rawValue) + B.le(UInt32(0))) == B.badMessage)
        for code in [B.Code.ctlTLVRead, .ctlTLVWrite, .ctlTLVCommand] {
            #expect(bench.status(B.le(code.rawValue) + B.le(UInt32(0))) == B.notSupported)
        }
    }

    @Test("without VIRTIO_SND_F_CTLS negotiated, control element requests are NOT_SUPP")
    func controlsNotNegotiated() throws {
        let bench = try SoundTestBench(features: VirtioFeature.kitFeatures)
        #expect(bench.query(.ctlInfo, start: 0, count: 1, size: 96).status == B.notSupported)
        #expect(bench.status(B.le(B.Code.ctlRead.rawValue) + B.le(UInt32(0))) == B.notSupported)
    }

    @Test("malformed requests: unknown codes NOT_SUPP, wrong sizes BAD_MSG, no status room: length 0; the device keeps serving")
    func malformed() throws {
        let bench = try SoundTestBench()
        #expect(bench.status(B.le(UInt32(0x0999))) == B.notSupported)
        #expect(bench.status(B.le(B.Code.jackConnected.rawValue) + B.le(UInt32(0))) == B.notSupported)
        #expect(bench.status([1, 0]) == B.badMessage)
        #expect(bench.status([]) == B.badMessage)
        #expect(bench.status([UInt8](repeating: 0, count: 600)) == B.badMessage)
        #expect(bench.status(B.le(B.Code.pcmPrepare.rawValue) + B.le(UInt32(0)) + [0]) == B.badMessage)
        #expect(bench.status(B.le(B.Code.pcmInfo.rawValue) + B.le(UInt32(0))) == B.badMessage)
        #expect(bench.control(B.le(B.Code.pcmPrepare.rawValue) + B.le(UInt32(0)), responseSize: 2).length == 0)
        #expect(bench.query(.pcmInfo, start: 0, count: 1, size: 32).status == B.ok)
    }
}

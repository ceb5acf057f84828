/// vhost-user-i2c: single-message transactions on a simulated bus (a 4 KiB EEPROM with 32-byte pages at
/// 0x50, an LM75 sensor at 0x48): EEPROM page writes from random addresses, sequential reads, sensor
/// reads, quick commands, and requests to an address that is not on the bus. Every EEPROM byte the
/// soak writes holds its own address's low byte, wherever a page write wraps, so any read must be a
/// run of consecutive low bytes (or blank 0xff) whatever the pointer and whichever requests a
/// disconnect dropped. Each request's status and used length are checked, and the sensor's bytes.
final class I2CLoad: LoadProfile {
    static let name = "i2c"

    private enum Kind { case write, read, sensor, quick, refused }
    private var pending: [Int: (kind: Kind, length: Int)] = [:]
    private var nextTag = 0
    private(set) var bytesVerified = 0
    private let eepromFile: String

    init(files: String) { eepromFile = "\(files)/eeprom.bin" }

    var executable: String { "vhost-user-i2c" }
    var arguments: [String] { ["--eeprom", "addr=0x50,size=4096,page=32,file=\(eepromFile)", "--sensor", "addr=0x48,temp=21.5"] }
    var maxQueues: Int { 1 }
    var maxQueueSize: Int { 1024 }
    var slabBytes: Int { 512 }

    /// Slab layout: out_hdr at 0, data at 16, the status byte after the data.
    private static let data = 16

    func makeRequest(queue: Int, slab: UnsafeMutableRawBufferPointer, random: inout SoakRandom) -> LoadRequest? {
        let kind = random.weighted([(Kind.write, 8), (.read, 6), (.sensor, 3), (.quick, 2), (.refused, 1)])
        let address: UInt16 = kind == .sensor ? 0x48 : kind == .refused ? 0x20 : 0x50
        var isRead = kind != .write
        var length: Int
        switch kind {
        case .write:
            let start = Int.random(in: 0..<4096, using: &random)
            let count = Int.random(in: 0...40, using: &random)
            slab[Self.data] = UInt8(start >> 8)
            slab[Self.data + 1] = UInt8(start & 0xff)
            for i in 0..<count {
                let target = start & ~31 | (start + i) & 31
                slab[Self.data + 2 + i] = UInt8(target & 0xff)
            }
            length = 2 + count
        case .read: length = Int.random(in: 1...256, using: &random)
        case .sensor: length = Int.random(in: 1...8, using: &random)
        case .quick:
            length = 0
            isRead = Bool.random(using: &random)
        case .refused: length = 1
        }
        slab.storeBytes(of: (address << 1).littleEndian, toByteOffset: 0, as: UInt16.self)
        slab.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
        slab.storeBytes(of: (isRead ? UInt32(2) : 0).littleEndian, toByteOffset: 4, as: UInt32.self)
        if isRead { for i in 0..<length { slab[Self.data + i] = 0xcc } }
        slab[Self.data + length] = 0xee
        nextTag += 1
        pending[nextTag] = (kind, length)
        var buffers = [SlabBuffer(offset: 0, length: 8, writable: false)]
        if length > 0 { buffers.append(SlabBuffer(offset: Self.data, length: length, writable: isRead)) }
        buffers.append(SlabBuffer(offset: Self.data + length, length: 1, writable: true))
        return LoadRequest(buffers: buffers, tag: nextTag)
    }

    func complete(_ tag: Int, usedLength: UInt32, slab: UnsafeMutableRawBufferPointer) -> String? {
        guard let (kind, length) = pending.removeValue(forKey: tag) else { return "completion of an unknown request \(tag)" }
        let status = slab[Self.data + length]
        let expectedLength = kind == .write || length == 0 ? 1 : length + 1
        if kind == .refused {
            return status == 1 && usedLength == 2 ? nil : "a request to an absent address: status \(status), used length \(usedLength)"
        }
        guard status == 0 else { return "\(kind) of \(length) bytes: status \(status)" }
        guard usedLength == expectedLength else { return "\(kind) of \(length) bytes: used length \(usedLength), not \(expectedLength)" }
        let bytes = UnsafeRawBufferPointer(rebasing: slab[Self.data..<(Self.data + length)])
        switch kind {
        case .sensor:
            for (i, b) in bytes.enumerated() where b != (i % 2 == 0 ? 0x15 : 0x80) {
                return "sensor byte \(i) is \(b): 21.5 °C reads 0x15 0x80"
            }
        case .read:
            for i in 1..<max(1, bytes.count) where bytes[i - 1] != 0xff && bytes[i] != 0xff && bytes[i] != bytes[i - 1] &+ 1 {
                return "EEPROM bytes \(i - 1) and \(i) of a read are \(bytes[i - 1]) and \(bytes[i]): not consecutive addresses' bytes"
            }
        default: break
        }
        bytesVerified += kind == .read || kind == .sensor ? length : 0
        return nil
    }

    func abandon(_ tag: Int) { pending[tag] = nil }
}

@testable import RPMBDevice

/// An image file in memory that records every write and sync, so a test can rebuild the file as a
/// crash after any step (or in the middle of a write) would leave it.
final class MemoryImageFile: ImageFile {
    enum Step: Equatable {
        case write(offset: Int, bytes: [UInt8])
        case sync
    }

    var bytes: [UInt8]
    private(set) var steps: [Step] = []
    /// When set, every write or sync fails (an I/O error).
    var failing = false

    init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }
    init(bytes: [UInt8]) { self.bytes = bytes }

    var size: Int { bytes.count }

    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(RPMBImageError) {
        guard offset + buffer.count <= bytes.count else { throw RPMBImageError("read beyond the end") }
        bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + buffer.count])) }
    }

    func write(at offset: Int, from buffer: UnsafeRawBufferPointer) throws(RPMBImageError) {
        guard !failing else { throw RPMBImageError("injected write failure") }
        guard offset + buffer.count <= bytes.count else { throw RPMBImageError("write beyond the end") }
        bytes.replaceSubrange(offset..<offset + buffer.count, with: buffer)
        steps.append(.write(offset: offset, bytes: Array(buffer)))
    }

    func sync() throws(RPMBImageError) {
        guard !failing else { throw RPMBImageError("injected sync failure") }
        steps.append(.sync)
    }

    func forgetSteps() { steps = [] }

    /// A formatted image of `units` × 128 KiB.
    static func formatted(units: Int = 1, key: [UInt8]? = nil, counter: UInt32 = 0) throws -> MemoryImageFile {
        let file = MemoryImageFile(size: RPMBImage.fileSize(capacityUnits: units))
        try RPMBImage.format(file, capacityUnits: units, key: key.map { AuthenticationKey($0)! }, counter: counter)
        file.forgetSteps()
        return file
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// What an `EEPROM` is: its first address, size and page size (the part's write buffer).
public struct EEPROMConfiguration: Sendable, Equatable {
    public var address: I2CAddress
    public var size: Int
    public var pageSize: Int
    /// Where the contents live across runs (created full of 0xff when missing).
    public var file: String

    public static let sizes = [128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]

    public init(address: I2CAddress, size: Int = 4096, pageSize: Int? = nil, file: String) {
        self.address = address
        self.size = size
        self.pageSize = pageSize ?? Self.defaultPageSize(size: size)
        self.file = file
    }

    /// The page size of the common parts of that size (24c02: 8, 24c16: 16, 24c32/64: 32, ...).
    public static func defaultPageSize(size: Int) -> Int {
        switch size {
        case ...256: 8
        case ...2048: 16
        case ...8192: 32
        case ...32768: 64
        default: 128
        }
    }

    /// Parts up to 2 KiB (24c01-24c16) take one address byte and select 256-byte blocks with the low
    /// bits of the client address; larger ones (24c32 and up) take two address bytes.
    public var addressBytes: Int { size > 2048 ? 2 : 1 }
    public var blockCount: Int { size > 2048 ? 1 : max(1, size / 256) }

    /// The client addresses the part occupies.
    public var addresses: [I2CAddress] {
        (0..<blockCount).compactMap {
            address.isTenBit ? I2CAddress(tenBit: address.value + UInt16($0)) : I2CAddress(sevenBit: address.value + UInt16($0))
        }
    }

    /// Nil when valid, else what is wrong.
    public var problem: String? {
        if !Self.sizes.contains(size) { return "size must be one of \(Self.sizes.map(String.init).joined(separator: ", "))" }
        if pageSize < 1 || pageSize > size || pageSize & (pageSize - 1) != 0 { return "page must be a power of two no larger than size" }
        if addresses.count != blockCount { return "the \(blockCount) addresses from \(address) do not fit the address space" }
        return nil
    }
}

public struct EEPROMError: Error, CustomStringConvertible {
    public let description: String
}

/// An AT24-style serial EEPROM (Microchip 24xx / Atmel AT24 behaviour), its contents mapped from a file.
///
/// Address pointer semantics of the real parts: a write message starts with the word address (one
/// byte, or two for parts above 2 KiB) and sets the pointer; data bytes after it are written from the
/// pointer onwards, wrapping around within the page (a page write never crosses into the next page).
/// A read message reads from the pointer sequentially across pages, wrapping at the end of the memory,
/// and leaves the pointer after the last byte read. A write shorter than the word address is refused
/// (NACK) rather than leaving the pointer half set. Writes reach the file through a shared mapping.
public final class EEPROM: SimulatedClient {
    public let configuration: EEPROMConfiguration
    public var addresses: [I2CAddress] { configuration.addresses }
    private let memory: UnsafeMutableRawBufferPointer
    /// The part's address counter.
    public private(set) var pointer = 0

    /// Maps `configuration.file`, creating it (0xff, as a blank part reads) when missing or empty.
    public init(_ configuration: EEPROMConfiguration) throws(EEPROMError) {
        if let problem = configuration.problem { throw EEPROMError(description: "eeprom at \(configuration.address): \(problem)") }
        self.configuration = configuration
        let path = configuration.file, size = configuration.size
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw EEPROMError(description: "cannot open eeprom file \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw EEPROMError(description: "cannot stat eeprom file \(path)") }
        let blank = info.st_size == 0
        guard blank || Int(info.st_size) == size else {
            throw EEPROMError(description: "eeprom file \(path) holds \(info.st_size) bytes, not the part's size \(size)")
        }
        if blank && ftruncate(fd, off_t(size)) != 0 {
            throw EEPROMError(description: "cannot size eeprom file \(path): \(String(cString: strerror(errno)))")
        }
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw EEPROMError(description: "cannot map eeprom file \(path): \(String(cString: strerror(errno)))")
        }
        memory = UnsafeMutableRawBufferPointer(start: base, count: size)
        if blank { memory.initializeMemory(as: UInt8.self, repeating: 0xff) }
    }

    deinit { munmap(memory.baseAddress, memory.count) }

    public func write(_ data: UnsafeRawBufferPointer, block: Int) -> Bool {
        if data.isEmpty { return true }
        let addressBytes = configuration.addressBytes
        guard data.count >= addressBytes else { return false }
        let word = addressBytes == 2 ? Int(data[0]) << 8 | Int(data[1]) : block << 8 | Int(data[0])
        pointer = word & (configuration.size - 1)
        let page = configuration.pageSize
        let pageStart = pointer & ~(page - 1)
        for i in addressBytes..<data.count {
            memory[pointer] = data[i]
            pointer = pageStart | (pointer + 1) & (page - 1)
        }
        return true
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, block: Int) -> Bool {
        var done = 0
        while done < buffer.count {
            let n = min(buffer.count - done, configuration.size - pointer)
            (buffer.baseAddress! + done).copyMemory(from: memory.baseAddress! + pointer, byteCount: n)
            done += n
            pointer = (pointer + n) & (configuration.size - 1)
        }
        return true
    }

    /// The contents, for tests and benchmarks.
    public func contents(at offset: Int, count: Int) -> [UInt8] { Array(memory[offset..<(offset + count)]) }
}

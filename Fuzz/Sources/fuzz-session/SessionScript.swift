import FuzzSupport
import VhostUserKit
import VhostUserTesting
#if canImport(Glibc)
import Glibc
#endif

/// Turns fuzzer bytes into a sequence of front-end messages with descriptors of the right kinds.
///
/// Each step starts with a selector byte: 0 writes guest memory (or the inflight file) as a driver
/// would, 1-63 is a request number (1-44 known, the rest unknown), 64 and up sends raw bytes. A request
/// continues with a flags byte (`Flags`), then its payload: structured from the following bytes (so
/// that a few bytes make a well-formed request that reaches deep states), or raw (a length byte and
/// the bytes). Its natural descriptors follow from the request: memory regions get the guest RAM
/// memfd, kick/call/err an eventfd, SET_BACKEND_REQ_FD a socket, SET_INFLIGHT_FD the inflight memfd.
struct SessionScript {
    static let maxSteps = 64
    static let guestBase: UInt64 = 0x1_0000_0000
    static let userOffset: UInt64 = 0x7f00_0000_0000

    struct Flags: OptionSet {
        let rawValue: UInt8
        static let needReply = Flags(rawValue: 1)
        static let rawPayload = Flags(rawValue: 2)
        static let extraDescriptor = Flags(rawValue: 4)
        static let noNaturalDescriptors = Flags(rawValue: 8)
        static let replyFlag = Flags(rawValue: 16)
        static let badVersion = Flags(rawValue: 32)
    }

    /// The files a script's descriptors come from.
    struct Files {
        let ram: Int32
        let ramSize: Int
        let ramMap: UnsafeMutableRawPointer
        let inflight: Int32
        let inflightSize: Int
        let inflightMap: UnsafeMutableRawPointer
    }

    let files: Files
    let offeredFeatures: UInt64
    let offeredProtocolFeatures: ProtocolFeatures
    /// Descriptors made for this input (eventfds, socket ends), closed when the script goes.
    private(set) var made: [OwnedDescriptor] = []

    init(files: Files, device: any VhostUserDevice) {
        self.files = files
        offeredFeatures = device.deviceFeatures | VirtioFeature.kitFeatures
        var p = ProtocolFeatures.kitDefault.union(device.extraProtocolFeatures)
        if device.configSize > 0 { p.insert(.config) }
        offeredProtocolFeatures = p
    }

    /// Decodes and sends every step of `input` on `channel` (non-blocking: a full socket ends the script).
    mutating func send(_ input: inout FuzzInput, on channel: MessageChannel) {
        for _ in 0..<Self.maxSteps where !input.isExhausted {
            let selector = input.u8()
            switch selector {
            case 0:
                writeMemory(&input)
            case 1..<64:
                guard sendRequest(UInt32(selector), &input, on: channel) else { return }
            default:
                let bytes = input.bytes(Int(input.u8()))
                guard (try? channel.sendBytes(bytes)) != nil else { return }
            }
        }
    }

    private func writeMemory(_ input: inout FuzzInput) {
        let toInflight = input.bool()
        let (map, size) = toInflight ? (files.inflightMap, files.inflightSize) : (files.ramMap, files.ramSize)
        let offset = Int(input.u16()) * 8 % size
        let bytes = input.bytes(Int(input.u8()))
        map.advanced(by: offset).copyMemory(from: bytes, byteCount: min(bytes.count, size - offset))
    }

    private mutating func sendRequest(_ number: UInt32, _ input: inout FuzzInput, on channel: MessageChannel) -> Bool {
        let flags = Flags(rawValue: input.u8())
        var payload: [UInt8] = []
        var descriptors: [Int32] = []
        if flags.contains(.rawPayload) {
            payload = input.bytes(Int(input.u8()))
        } else if let request = FrontendRequest(rawValue: number) {
            (payload, descriptors) = structured(request, &input)
        }
        if flags.contains(.noNaturalDescriptors) { descriptors = [] }
        if flags.contains(.extraDescriptor) { descriptors.append(descriptor(kind: input.u8())) }
        var headerFlags: MessageHeader.Flags = flags.contains(.badVersion) ? [] : .version1
        if flags.contains(.needReply) { headerFlags.insert(.needReply) }
        if flags.contains(.replyFlag) { headerFlags.insert(.reply) }
        let header = MessageHeader(request: number, flags: headerFlags, size: UInt32(payload.count))
        return (try? channel.send(header, payload: payload, descriptors: descriptors)) != nil
    }

    private mutating func structured(_ request: FrontendRequest, _ input: inout FuzzInput) -> ([UInt8], [Int32]) {
        func u64(_ v: UInt64) -> [UInt8] { U64Payload(v).encoded() }
        func queueIndex() -> UInt32 { UInt32(input.u8() & 3) }
        switch request {
        case .setFeatures:
            return (u64(offeredFeatures & ~input.u64()), [])
        case .setProtocolFeatures:
            return (u64(offeredProtocolFeatures.rawValue & ~input.u64()), [])
        case .setStatus:
            return (u64(UInt64(input.u8())), [])
        case .setVringNum:
            return (VringState(index: queueIndex(), num: 1 << UInt32(input.u8() % 16)).encoded(), [])
        case .setVringBase:
            return (VringState(index: queueIndex(), num: UInt32(input.u16())).encoded(), [])
        case .getVringBase, .vringKick:
            return (VringState(index: queueIndex(), num: 0).encoded(), [])
        case .setVringEnable:
            return (VringState(index: queueIndex(), num: UInt32(input.u8() % 3)).encoded(), [])
        case .setVringAddr:
            let index = queueIndex()
            func ring() -> UInt64 { Self.guestBase + Self.userOffset + UInt64(input.u16()) * 16 }
            return (VringAddress(index: index, descriptorTable: ring(), usedRing: ring(), availableRing: ring()).encoded(), [])
        case .setVringKick, .setVringCall, .setVringErr:
            let b = input.u8()
            let file = VringFile(index: UInt32(b & 3), hasFile: b & 0x80 == 0)
            return (file.payload.encoded(), file.hasFile ? [descriptor(kind: 1)] : [])
        case .setMemTable:
            let count = input.below(MemoryTable.maxRegions + 1)
            let regions = (0..<count).map { _ in region(&input) }
            var w = ByteWriter()
            w.u32(UInt32(count)); w.u32(0)
            for r in regions { r.write(to: &w) }
            return (w.bytes, regions.map { _ in files.ram })
        case .addMemReg:
            return (SingleMemoryRegion(region(&input)).encoded(), [files.ram])
        case .remMemReg:
            return (SingleMemoryRegion(region(&input)).encoded(), [])
        case .getConfig, .setConfig:
            let offset = UInt32(input.u8() % 128), size = input.below(64)
            let data = request == .getConfig ? [UInt8](repeating: 0, count: size) : input.bytes(size)
            return (ConfigPayload(offset: offset, data: data).encoded(), [])
        case .getInflightFd:
            let count = UInt16(input.u8() % 4), size = UInt16(1) << UInt16(input.u8() % 12)
            return (InflightDescription(mmapSize: 0, mmapOffset: 0, queueCount: count, queueSize: size).encoded(), [])
        case .setInflightFd:
            let pages = UInt64(input.u8() % 16 + 1), offset = UInt64(input.u8() % 16) * 4096
            let count = UInt16(input.u8() % 4), size = UInt16(1) << UInt16(input.u8() % 12)
            let d = InflightDescription(mmapSize: pages * 4096, mmapOffset: offset, queueCount: count, queueSize: size)
            return (d.encoded(), [files.inflight])
        case .setBackendReqFd:
            return ([], [descriptor(kind: 2)])
        default:
            return ([], [])
        }
    }

    /// A region of the guest RAM file: gpa slot (64 KiB units), pages, file offset in pages.
    private func region(_ input: inout FuzzInput) -> MemoryRegionDescription {
        let gpa = Self.guestBase + UInt64(input.u8()) * 0x10000
        let pages = UInt64(input.u8() % 128) + 1, offset = UInt64(input.u8() % 128) * 4096
        return MemoryRegionDescription(guestPhysicalAddress: gpa, size: pages * 4096, userAddress: gpa + Self.userOffset, mmapOffset: offset)
    }

    /// A descriptor of `kind` (modulo 4): the guest RAM memfd, a new eventfd, one end of a new socket
    /// pair, the inflight memfd. Never a host file.
    private mutating func descriptor(kind: UInt8) -> Int32 {
        switch kind % 4 {
        case 0: return files.ram
        case 1:
            guard let event = try? EventFD() else { fatalError("eventfd: errno \(errno)") }
            made.append(event.descriptor)
            return event.rawValue
        case 2:
            guard let (a, b) = try? socketPair() else { fatalError("socketpair: errno \(errno)") }
            made += [a, b]
            return b.rawValue
        default: return files.inflight
        }
    }
}

extension MessageChannel {
    /// Sends bytes as they are (possibly not a message at all).
    func sendBytes(_ bytes: [UInt8]) throws(VhostUserError) {
        guard !bytes.isEmpty else { return }
        let n = bytes.withUnsafeBytes { Glibc.send(socket.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n == bytes.count else { throw .system(SystemError("send", errno: errno)) }
    }
}

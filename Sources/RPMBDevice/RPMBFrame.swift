/// The virtio-rpmb wire format (virtio 1.2, 5.12.6.1 "Device Operation: Request Queue"): 512-byte frames in
/// the JEDEC eMMC RPMB layout (JESD84-B51, 6.6.22), multi-byte fields big-endian.
public enum RPMBFrame {
    public static let size = 512
    /// One RPMB block: the data field of one frame (the spec's "half sector").
    public static let blockSize = 256

    /// Byte offsets of the fields in a frame.
    public enum Offset {
        public static let keyOrMAC = 196
        public static let data = 228
        public static let nonce = 484
        public static let writeCounter = 500
        public static let address = 504
        public static let blockCount = 506
        public static let result = 508
        public static let requestResponse = 510
    }
    public static let macSize = 32
    public static let nonceSize = 16
    /// The bytes of each frame the MAC covers: everything after the stuff bytes and the key/MAC field.
    public static let authenticatedRange = Offset.data..<size

    /// `req_resp` values of requests.
    public enum Request: UInt16, Sendable, CaseIterable {
        case programKey = 0x0001
        case getWriteCounter = 0x0002
        case dataWrite = 0x0003
        case dataRead = 0x0004
        case resultRead = 0x0005

        /// The `req_resp` value of the response to this request.
        public var response: UInt16 { rawValue << 8 }
    }

    /// `result` values (VIRTIO_RPMB_RES_*).
    public enum Result: UInt16, Sendable, CaseIterable {
        case ok = 0x0000
        case generalFailure = 0x0001
        case authenticationFailure = 0x0002
        case counterFailure = 0x0003
        case addressFailure = 0x0004
        case writeFailure = 0x0005
        case readFailure = 0x0006
        case noAuthenticationKey = 0x0007
        case writeCounterExpired = 0x0080
    }
}

/// A view of one 512-byte frame in memory (a request the device copied out of guest memory, or a response
/// it is building). The caller guarantees `RPMBFrame.size` bytes at `base`.
public struct FrameView {
    public let base: UnsafeMutableRawPointer

    public init(_ base: UnsafeMutableRawPointer) { self.base = base }

    @inline(__always) func u16(at offset: Int) -> UInt16 {
        UInt16(base.load(fromByteOffset: offset, as: UInt8.self)) << 8 | UInt16(base.load(fromByteOffset: offset + 1, as: UInt8.self))
    }
    @inline(__always) func setU16(_ value: UInt16, at offset: Int) {
        base.storeBytes(of: UInt8(truncatingIfNeeded: value >> 8), toByteOffset: offset, as: UInt8.self)
        base.storeBytes(of: UInt8(truncatingIfNeeded: value), toByteOffset: offset + 1, as: UInt8.self)
    }

    public var requestResponse: UInt16 {
        get { u16(at: RPMBFrame.Offset.requestResponse) }
        nonmutating set { setU16(newValue, at: RPMBFrame.Offset.requestResponse) }
    }
    public var result: UInt16 {
        get { u16(at: RPMBFrame.Offset.result) }
        nonmutating set { setU16(newValue, at: RPMBFrame.Offset.result) }
    }
    public var blockCount: UInt16 {
        get { u16(at: RPMBFrame.Offset.blockCount) }
        nonmutating set { setU16(newValue, at: RPMBFrame.Offset.blockCount) }
    }
    public var address: UInt16 {
        get { u16(at: RPMBFrame.Offset.address) }
        nonmutating set { setU16(newValue, at: RPMBFrame.Offset.address) }
    }
    public var writeCounter: UInt32 {
        get { UInt32(u16(at: RPMBFrame.Offset.writeCounter)) << 16 | UInt32(u16(at: RPMBFrame.Offset.writeCounter + 2)) }
        nonmutating set {
            setU16(UInt16(truncatingIfNeeded: newValue >> 16), at: RPMBFrame.Offset.writeCounter)
            setU16(UInt16(truncatingIfNeeded: newValue), at: RPMBFrame.Offset.writeCounter + 2)
        }
    }
    public var keyOrMAC: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + RPMBFrame.Offset.keyOrMAC, count: RPMBFrame.macSize)
    }
    public var data: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + RPMBFrame.Offset.data, count: RPMBFrame.blockSize)
    }
    public var nonce: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + RPMBFrame.Offset.nonce, count: RPMBFrame.nonceSize)
    }
    /// The bytes the MAC covers.
    public var authenticated: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + RPMBFrame.authenticatedRange.lowerBound, count: RPMBFrame.authenticatedRange.count)
    }
    /// Zeroes the whole frame.
    public func clear() { base.initializeMemory(as: UInt8.self, repeating: 0, count: RPMBFrame.size) }
}

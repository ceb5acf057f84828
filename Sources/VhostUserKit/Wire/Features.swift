/// Virtio feature bits that the kit itself implements (virtio 1.2, section 6) plus the vhost-user
/// protocol-features bit. Device-specific bits (0-23) come from each device.
public enum VirtioFeature {
    public static let ringIndirectDesc: UInt64 = 1 << 28
    public static let ringEventIdx: UInt64 = 1 << 29
    /// VHOST_USER_F_PROTOCOL_FEATURES: not a virtio bit; it says GET/SET_PROTOCOL_FEATURES exist.
    public static let protocolFeatures: UInt64 = 1 << 30
    public static let version1: UInt64 = 1 << 32
    public static let accessPlatform: UInt64 = 1 << 33
    public static let ringPacked: UInt64 = 1 << 34
    public static let inOrder: UInt64 = 1 << 35
    public static let logAll: UInt64 = 1 << 26

    /// What every daemon built on the kit offers, on top of the device's own bits (LOG_ALL: the kit
    /// logs every device's writes while a migration asks for it).
    public static let kitFeatures: UInt64 = version1 | ringIndirectDesc | ringEventIdx | protocolFeatures | logAll
}

/// vhost-user protocol feature bits (vhost-user spec, "Protocol features").
public struct ProtocolFeatures: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let mq = ProtocolFeatures(rawValue: 1 << 0)
    public static let logShmfd = ProtocolFeatures(rawValue: 1 << 1)
    public static let rarp = ProtocolFeatures(rawValue: 1 << 2)
    public static let replyAck = ProtocolFeatures(rawValue: 1 << 3)
    public static let netMtu = ProtocolFeatures(rawValue: 1 << 4)
    public static let backendReq = ProtocolFeatures(rawValue: 1 << 5)
    public static let crossEndian = ProtocolFeatures(rawValue: 1 << 6)
    public static let cryptoSession = ProtocolFeatures(rawValue: 1 << 7)
    public static let pagefault = ProtocolFeatures(rawValue: 1 << 8)
    public static let config = ProtocolFeatures(rawValue: 1 << 9)
    public static let backendSendFd = ProtocolFeatures(rawValue: 1 << 10)
    public static let hostNotifier = ProtocolFeatures(rawValue: 1 << 11)
    public static let inflightShmfd = ProtocolFeatures(rawValue: 1 << 12)
    public static let resetDevice = ProtocolFeatures(rawValue: 1 << 13)
    public static let inbandNotifications = ProtocolFeatures(rawValue: 1 << 14)
    public static let configureMemSlots = ProtocolFeatures(rawValue: 1 << 15)
    public static let status = ProtocolFeatures(rawValue: 1 << 16)
    public static let xenMmap = ProtocolFeatures(rawValue: 1 << 17)
    public static let sharedObject = ProtocolFeatures(rawValue: 1 << 18)
    public static let deviceState = ProtocolFeatures(rawValue: 1 << 19)

    /// Offered by every daemon (LOG_SHMFD and DEVICE_STATE for migration: the kit logs writes and moves
    /// the device's state); CONFIG and INFLIGHT_SHMFD are added when the device supports them.
    public static let kitDefault: ProtocolFeatures = [.mq, .replyAck, .backendReq, .resetDevice, .configureMemSlots, .status,
                                                      .logShmfd, .deviceState]

    public var description: String { "0x" + String(rawValue, radix: 16) }
}

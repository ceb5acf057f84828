/// One segment of an I2C transaction (one virtio-i2c request): a read or write of `length` bytes
/// at `address`, with its data in memory the request queue owns (`data` holds what to write, or
/// receives what is read). Zero-length messages are SMBus quick commands.
public struct I2CMessage {
    public var address: I2CAddress
    public var isRead: Bool
    public var data: UnsafeMutableRawBufferPointer

    public init(address: I2CAddress, isRead: Bool, data: UnsafeMutableRawBufferPointer) {
        self.address = address
        self.isRead = isRead
        self.data = data
    }
}

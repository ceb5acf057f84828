import CI2C

/// The SMBus transfer types the passthrough uses (the `size` of an I2C_SMBUS ioctl).
public enum SMBusTransferType: UInt32, Sendable {
    case quick = 0          // I2C_SMBUS_QUICK
    case byte = 1           // I2C_SMBUS_BYTE
    case byteData = 2       // I2C_SMBUS_BYTE_DATA
    case wordData = 3       // I2C_SMBUS_WORD_DATA
    case blockData = 5      // I2C_SMBUS_BLOCK_DATA (writes: command, count, data)
    case i2cBlockData = 8   // I2C_SMBUS_I2C_BLOCK_DATA
}

/// One SMBus transfer: direction, command byte, type and its data (`block[0]` is the length of a block).
public struct SMBusTransfer {
    public var address: I2CAddress
    public var isRead: Bool
    public var command: UInt8
    public var type: SMBusTransferType
    public var data = i2c_smbus_data()

    public init(address: I2CAddress, isRead: Bool, command: UInt8, type: SMBusTransferType) {
        self.address = address
        self.isRead = isRead
        self.command = command
        self.type = type
    }
}

/// A host I2C adapter as the passthrough uses it: what it can do (I2C_FUNCS) and the two ways to
/// move bytes. `DevI2CAdapter` is the real one; tests put a recording fake in its place.
public protocol HostAdapter: AnyObject {
    /// The adapter's I2C_FUNC_* bits.
    var functionality: UInt64 { get }
    /// The messages as one combined transaction (I2C_RDWR): 0, or the errno.
    func transfer(_ messages: UnsafeMutableBufferPointer<I2CMessage>) -> Int32
    /// One SMBus transfer (I2C_SMBUS after selecting the client): 0, or the errno. Reads fill `data`.
    func smbus(_ transfer: inout SMBusTransfer) -> Int32
}

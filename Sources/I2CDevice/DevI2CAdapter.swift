import CI2C
import CVhostUser
import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

public struct HostAdapterError: Error, CustomStringConvertible {
    public let description: String
}

/// A host adapter through its i2c-dev node, `/dev/i2c-N`, opened at start-up.
public final class DevI2CAdapter: HostAdapter {
    public let number: Int
    public let functionality: UInt64
    private let file: OwnedDescriptor
    /// The kernel's message array, reused by every transfer.
    private let kernelMessages = UnsafeMutableBufferPointer<i2c_msg>.allocate(capacity: Int(vhu_i2c_rdwr_max_messages))
    /// The client the SMBus path selected last (I2C_SLAVE), to skip repeating the ioctl.
    private var selected: I2CAddress?

    /// The ioctls the passthrough makes while serving, for the daemon's sandbox.
    public static let servingRequests: [UInt32] = [UInt32(I2C_RDWR), UInt32(I2C_SMBUS), UInt32(I2C_SLAVE), UInt32(I2C_TENBIT)]

    public init(number: Int, devicePath: String? = nil) throws(HostAdapterError) {
        let path = devicePath ?? "/dev/i2c-\(number)"
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else {
            throw HostAdapterError(description: "cannot open \(path): \(SystemError.describe(errno))"
                                   + (errno == ENOENT ? " (is the i2c-dev module loaded?)" : ""))
        }
        file = OwnedDescriptor(fd)
        var funcs: UInt = 0
        guard vhu_ioctl_ptr(fd, UInt(I2C_FUNCS), &funcs) == 0 else {
            throw HostAdapterError(description: "I2C_FUNCS on \(path): \(SystemError.describe(errno))")
        }
        self.number = number
        functionality = UInt64(funcs)
    }

    deinit { kernelMessages.deallocate() }

    public func transfer(_ messages: UnsafeMutableBufferPointer<I2CMessage>) -> Int32 {
        guard messages.count <= kernelMessages.count else { return EINVAL }
        for (i, m) in messages.enumerated() {
            var flags = m.isRead ? UInt16(I2C_M_RD) : 0
            if m.address.isTenBit { flags |= UInt16(I2C_M_TEN) }
            kernelMessages[i] = i2c_msg(addr: m.address.value, flags: flags, len: UInt16(m.data.count),
                                        buf: m.data.baseAddress?.assumingMemoryBound(to: UInt8.self))
        }
        var request = i2c_rdwr_ioctl_data(msgs: kernelMessages.baseAddress, nmsgs: UInt32(messages.count))
        return vhu_ioctl_ptr(file.rawValue, UInt(I2C_RDWR), &request) >= 0 ? 0 : errno
    }

    public func smbus(_ transfer: inout SMBusTransfer) -> Int32 {
        if selected != transfer.address {
            selected = nil
            guard vhu_ioctl_ptr(file.rawValue, UInt(I2C_TENBIT), UnsafeMutableRawPointer(bitPattern: transfer.address.isTenBit ? 1 : 0)) == 0,
                  vhu_ioctl_ptr(file.rawValue, UInt(I2C_SLAVE), UnsafeMutableRawPointer(bitPattern: UInt(transfer.address.value))) == 0
            else { return errno }
            selected = transfer.address
        }
        return withUnsafeMutablePointer(to: &transfer.data) { data in
            var request = i2c_smbus_ioctl_data(read_write: transfer.isRead ? UInt8(I2C_SMBUS_READ) : UInt8(I2C_SMBUS_WRITE),
                                               command: transfer.command, size: transfer.type.rawValue, data: data)
            return vhu_ioctl_ptr(file.rawValue, UInt(I2C_SMBUS), &request) >= 0 ? 0 : errno
        }
    }
}

/// The virtio-i2c request encoding (virtio 1.2, 5.19 "I2C Adapter Device").
public enum VirtioI2C {
    public static let deviceID: UInt32 = 34

    /// Feature bits.
    public enum Feature {
        /// VIRTIO_I2C_F_ZERO_LENGTH_REQUEST: requests without a buffer (SMBus quick) and the M_RD flag.
        /// Mandatory: the device offers it and refuses a driver that did not accept it (5.19.6.2).
        public static let zeroLengthRequest: UInt64 = 1 << 0
    }

    /// The bits of out_hdr.flags.
    public enum Flag {
        /// This request and the next are one transaction: if this one fails, fail the next instead
        /// of executing it.
        public static let failNext: UInt32 = 1 << 0
        /// A read request (the buffer is device-writable); clear for a write.
        public static let read: UInt32 = 1 << 1
        /// Every bit a request may set; the rest are reserved as zero.
        public static let known: UInt32 = failNext | read
    }

    /// in_hdr.status.
    public enum Status {
        public static let ok: UInt8 = 0
        public static let error: UInt8 = 1
    }

    /// struct virtio_i2c_out_hdr: le16 addr, le16 padding, le32 flags.
    public static let outHeaderSize = 8
    /// struct virtio_i2c_in_hdr: u8 status.
    public static let inHeaderSize = 1
}

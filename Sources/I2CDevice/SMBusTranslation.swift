import CI2C

/// The SMBus transfer that puts the same bytes on the wire as a transaction of I2C messages, for host
/// adapters that cannot do plain I2C (I2C_FUNCS without I2C_FUNC_I2C, e.g. most PC SMBus controllers).
///
/// | messages (one client)            | SMBus transfer                                    |
/// |----------------------------------|---------------------------------------------------|
/// | write 0 / read 0                 | quick write / quick read                          |
/// | write 1 / read 1                 | send byte / receive byte                          |
/// | write 2, 3, 4-33                 | write byte data, write word data, I2C block write |
/// | write 1 + read 1, 2, 1-32        | read byte data, read word data, I2C block read    |
///
/// A size the adapter lacks falls back to an I2C block transfer (or, for a block write whose second
/// byte is its count, an SMBus block write); anything else has no SMBus form and is refused.
extension SMBusTransfer {
    public init?(_ messages: UnsafeMutableBufferPointer<I2CMessage>, functionality funcs: UInt64) {
        func has(_ bit: Int32) -> Bool { funcs & UInt64(UInt32(bitPattern: bit)) != 0 }
        switch messages.count {
        case 1:
            let m = messages[0], n = m.data.count
            if n == 0 {
                guard has(I2C_FUNC_SMBUS_QUICK) else { return nil }
                self.init(address: m.address, isRead: m.isRead, command: 0, type: .quick)
            } else if m.isRead {
                guard n == 1, has(I2C_FUNC_SMBUS_READ_BYTE) else { return nil }
                self.init(address: m.address, isRead: true, command: 0, type: .byte)
            } else if n == 1 {
                guard has(I2C_FUNC_SMBUS_WRITE_BYTE) else { return nil }
                self.init(address: m.address, isRead: false, command: m.data[0], type: .byte)
            } else {
                let payload = UnsafeRawBufferPointer(rebasing: m.data[1...])
                if n == 2 && has(I2C_FUNC_SMBUS_WRITE_BYTE_DATA) {
                    self.init(address: m.address, isRead: false, command: m.data[0], type: .byteData)
                    data.byte = payload[0]
                } else if n == 3 && has(I2C_FUNC_SMBUS_WRITE_WORD_DATA) {
                    self.init(address: m.address, isRead: false, command: m.data[0], type: .wordData)
                    data.word = UInt16(payload[0]) | UInt16(payload[1]) << 8
                } else if payload.count <= Int(I2C_SMBUS_BLOCK_MAX) && has(I2C_FUNC_SMBUS_WRITE_I2C_BLOCK) {
                    self.init(address: m.address, isRead: false, command: m.data[0], type: .i2cBlockData)
                    setBlock(payload)
                } else if payload.count >= 2 && Int(payload[0]) == payload.count - 1 && has(I2C_FUNC_SMBUS_WRITE_BLOCK_DATA) {
                    self.init(address: m.address, isRead: false, command: m.data[0], type: .blockData)
                    setBlock(UnsafeRawBufferPointer(rebasing: payload[1...]))
                } else {
                    return nil
                }
            }
        case 2:
            let w = messages[0], r = messages[1], n = r.data.count
            guard !w.isRead, w.data.count == 1, r.isRead, r.address == w.address, n >= 1 else { return nil }
            if n == 1 && has(I2C_FUNC_SMBUS_READ_BYTE_DATA) {
                self.init(address: w.address, isRead: true, command: w.data[0], type: .byteData)
            } else if n == 2 && has(I2C_FUNC_SMBUS_READ_WORD_DATA) {
                self.init(address: w.address, isRead: true, command: w.data[0], type: .wordData)
            } else if n <= Int(I2C_SMBUS_BLOCK_MAX) && has(I2C_FUNC_SMBUS_READ_I2C_BLOCK) {
                self.init(address: w.address, isRead: true, command: w.data[0], type: .i2cBlockData)
                withUnsafeMutableBytes(of: &data.block) { $0[0] = UInt8(n) }
            } else {
                return nil
            }
        default:
            return nil
        }
    }

    private mutating func setBlock(_ bytes: UnsafeRawBufferPointer) {
        withUnsafeMutableBytes(of: &data.block) { block in
            block[0] = UInt8(bytes.count)
            UnsafeMutableRawBufferPointer(rebasing: block[1...]).copyMemory(from: bytes)
        }
    }

    /// Copies what a read transfer returned into the transaction's read message (the last one).
    public func deliver(into messages: UnsafeMutableBufferPointer<I2CMessage>) {
        guard isRead, let target = messages.last?.data, !target.isEmpty else { return }
        var copy = data
        switch type {
        case .quick, .blockData: break
        case .byte, .byteData: target[0] = copy.byte
        case .wordData:
            target[0] = UInt8(copy.word & 0xff)
            if target.count > 1 { target[1] = UInt8(copy.word >> 8) }
        case .i2cBlockData:
            withUnsafeBytes(of: &copy.block) { block in
                let n = min(target.count, Int(block[0]))
                target.baseAddress!.copyMemory(from: block.baseAddress! + 1, byteCount: n)
            }
        }
    }
}

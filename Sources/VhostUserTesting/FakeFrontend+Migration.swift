import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// What QEMU sends around a live migration: the dirty log, and the device state through a pipe.
extension FakeFrontend {
    /// SET_LOG_BASE with `log`'s memfd; returns the back-end's reply (0: mapped).
    @discardableResult
    public func setLogBase(_ description: LogDescription, file: Int32) throws -> UInt64 {
        try send(.setLogBase, payload: description.encoded(), descriptors: [file])
        return try U64Payload(decoding: try receiveReply(to: .setLogBase).payload, for: .setLogBase).value
    }

    /// Turns dirty logging on as QEMU's migration does: SET_LOG_BASE, SET_FEATURES with LOG_ALL, then
    /// SET_VRING_ADDR with the log flag and the used ring's guest address for every queue.
    public func startDirtyLogging(_ log: FakeDirtyLog, queues: [FakeQueue]) throws {
        let reply = try setLogBase(log.description, file: log.file.rawValue)
        guard reply == 0 else { throw FakeFrontendError.unexpectedReply("SET_LOG_BASE failed with \(reply)") }
        try setFeatures(features | VirtioFeature.logAll)
        for q in queues { try setVringAddr(q.loggedAddress) }
        // QEMU waits for these (NEED_REPLY): the rings log from here on.
        _ = try getQueueNum()
    }

    /// Turns it off again: SET_FEATURES without LOG_ALL, rings without the log flag.
    public func stopDirtyLogging(queues: [FakeQueue]) throws {
        try setFeatures(features & ~VirtioFeature.logAll)
        for q in queues { try setVringAddr(q.address) }
        _ = try getQueueNum()
    }

    /// Saves the device's state as a migration source's QEMU does: SET_DEVICE_STATE_FD (save, stopped)
    /// with a pipe's write end, reads the stream to its end, then CHECK_DEVICE_STATE. Returns the bytes
    /// and the check's result (0: success).
    public func saveDeviceState() throws -> (bytes: [UInt8], check: UInt64) {
        let (r, w) = try rawPipe()
        let readEnd = OwnedDescriptor(r)
        var writeEnd: OwnedDescriptor? = OwnedDescriptor(w)
        let flags = try setDeviceStateFd(direction: 0, pipe: writeEnd!)
        guard flags & (1 << 8) != 0 else { throw FakeFrontendError.unexpectedReply("SET_DEVICE_STATE_FD reply 0x\(String(flags, radix: 16))") }
        // The back-end holds its own copy of the write end: end of stream comes when it closes it.
        writeEnd = nil
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            guard waitReadable(readEnd.rawValue, timeoutMilliseconds: replyTimeoutMilliseconds) else { throw FakeFrontendError.timeout("the device state") }
            let n = chunk.withUnsafeMutableBytes { read(readEnd.rawValue, $0.baseAddress!, $0.count) }
            guard n >= 0 else { throw FakeFrontendError.system("read", errno) }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return (bytes, try checkDeviceState())
    }

    /// Loads `bytes` as a migration destination's QEMU does: SET_DEVICE_STATE_FD (load, stopped) with a
    /// pipe's read end, writes the stream and closes it, then CHECK_DEVICE_STATE (returned; 0: success).
    public func loadDeviceState(_ bytes: [UInt8]) throws -> UInt64 {
        let (r, w) = try rawPipe()
        var readEnd: OwnedDescriptor? = OwnedDescriptor(r)
        var writeEnd: OwnedDescriptor? = OwnedDescriptor(w)
        let flags = try setDeviceStateFd(direction: 1, pipe: readEnd!)
        guard flags & (1 << 8) != 0 else { throw FakeFrontendError.unexpectedReply("SET_DEVICE_STATE_FD reply 0x\(String(flags, radix: 16))") }
        readEnd = nil
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { write(writeEnd!.rawValue, $0.baseAddress! + sent, $0.count - sent) }
            guard n > 0 else { throw FakeFrontendError.system("write", errno) }
            sent += n
        }
        writeEnd = nil
        return try checkDeviceState()
    }

    /// SET_DEVICE_STATE_FD with `pipe`; returns the reply's u64 (bit 8: no descriptor returned).
    public func setDeviceStateFd(direction: UInt32, phase: UInt32 = 0, pipe: OwnedDescriptor) throws -> UInt64 {
        try send(.setDeviceStateFd, payload: DeviceStateTransferParameters(direction: direction, phase: phase).encoded(),
                 descriptors: [pipe.rawValue])
        return try U64Payload(decoding: try receiveReply(to: .setDeviceStateFd).payload, for: .setDeviceStateFd).value
    }

    /// CHECK_DEVICE_STATE: 0 when the transfer succeeded.
    public func checkDeviceState() throws -> UInt64 {
        try U64Payload(decoding: try query(.checkDeviceState).payload, for: .checkDeviceState).value
    }
}

extension FakeQueue {
    /// The ring's addresses with the log flag and the used ring's guest address (SET_VRING_ADDR while
    /// QEMU migrates).
    public var loggedAddress: VringAddress {
        var a = address
        a.flags = VringAddress.logFlag
        a.log = usedRing
        return a
    }
}

/// A pipe: (read end, write end).
public func pipePair() throws -> (OwnedDescriptor, OwnedDescriptor) {
    let (r, w) = try rawPipe()
    return (OwnedDescriptor(r), OwnedDescriptor(w))
}

/// A pipe's raw descriptors, for a caller that closes each end on its own.
private func rawPipe() throws -> (Int32, Int32) {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else { throw FakeFrontendError.system("pipe", errno) }
    return (fds[0], fds[1])
}

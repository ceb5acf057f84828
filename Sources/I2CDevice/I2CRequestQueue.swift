import CI2C
import Logging
import VhostUserKit

/// Serves the request queue: parses each chain into an I2C message, gathers the messages that
/// FAIL_NEXT chains into one transaction, runs it on the bus and writes every request's status.
///
/// The chains of a transaction may arrive over several turns (the driver publishes them one by
/// one); the ones already taken wait here, their buffers still mapped (the worker holds the memory
/// table until `stop`, which fails whatever is still held). Nothing is allocated per request: the
/// messages' data lives in a scratch area of `maxMessages` × `maxMessageLength` made with the queue.
final class I2CRequestQueue: QueueHandler {
    /// The most messages in one transaction (the kernel's I2C_RDWR limit); a longer group fails whole.
    static let maxMessages = Int(vhu_i2c_rdwr_max_messages)
    /// The longest buffer of one request (i2c-dev's limit); longer requests fail.
    static let maxMessageLength = Int(vhu_i2c_max_message_length)
    /// The most device-writable buffers a read request's data may be split into.
    static let maxReadSegments = 16

    /// A request taken from the ring and not yet completed.
    struct Held {
        var head: UInt16
        /// The status byte (the last device-writable byte).
        var status: UnsafeMutablePointer<UInt8>
        /// The used length to report: every device-writable byte up to the status.
        var writableLength: Int
        /// For a read: where its data goes (`segments[firstSegment..<firstSegment + segmentCount]`).
        var firstSegment: Int
        var segmentCount: Int
        /// The request is malformed: it fails, and with it its transaction.
        var malformed: Bool
    }

    private let bus: I2CBus
    private let logger: Logger
    private let zeroLengthNegotiated: Bool
    private var refusedDriverLogged = false
    private var malformedLogged = 0

    private let held = UnsafeMutableBufferPointer<Held>.allocate(capacity: maxMessages)
    private let messages = UnsafeMutableBufferPointer<I2CMessage>.allocate(capacity: maxMessages)
    private let segments = UnsafeMutableBufferPointer<UnsafeMutableRawBufferPointer>.allocate(capacity: maxMessages * maxReadSegments)
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: maxMessages * maxMessageLength, alignment: 16)
    private var count = 0
    private var segmentsUsed = 0
    /// The rest of a transaction that already failed (it grew past `maxMessages`): fail each request
    /// up to and including the one without FAIL_NEXT.
    private var failingRestOfGroup = false

    init(bus: I2CBus, features: UInt64, logger: Logger) {
        self.bus = bus
        self.logger = logger
        zeroLengthNegotiated = features & VirtioI2C.Feature.zeroLengthRequest != 0
    }

    deinit {
        held.deallocate()
        messages.deallocate()
        segments.deallocate()
        scratch.deallocate()
    }

    func process(_ queue: Virtqueue) -> ProcessResult {
        while let chain = queue.nextChain() {
            take(chain, from: queue)
        }
        return .done
    }

    /// Fails what is still held: the rest of its transaction never came.
    func stop(_ queue: Virtqueue) {
        if count > 0 { logger.warning("queue stopped with \(count) requests of an unfinished transaction held: failing them") }
        completeHeld(on: queue, succeeded: 0)
        failingRestOfGroup = false
    }

    private func take(_ chain: DescriptorChain, from queue: Virtqueue) {
        guard let status = lastWritableByte(chain) else {
            malformed(chain.head, "has no device-writable status byte; returned unprocessed")
            queue.complete(head: chain.head, written: 0)
            return
        }
        var reader = chain.reader()
        guard let field = reader.read(UInt16.self), let _ = reader.read(UInt16.self), let flags = reader.read(UInt32.self) else {
            malformed(chain.head, "is shorter than its out_hdr (\(chain.readableLength) readable bytes)")
            fail(head: chain.head, status: status, writableLength: chain.writableLength, on: queue)
            return
        }
        if failingRestOfGroup {
            failingRestOfGroup = flags & VirtioI2C.Flag.failNext != 0
            fail(head: chain.head, status: status, writableLength: chain.writableLength, on: queue)
            return
        }
        let index = count
        count += 1
        held[index] = Held(head: chain.head, status: status, writableLength: chain.writableLength,
                           firstSegment: segmentsUsed, segmentCount: 0, malformed: true)
        if let problem = parse(chain, field: field, flags: flags, reader: &reader, into: index) {
            malformed(chain.head, problem)
        } else {
            held[index].malformed = false
        }
        if flags & VirtioI2C.Flag.failNext == 0 {
            finishTransaction(on: queue)
        } else if count == Self.maxMessages {
            malformed(chain.head, "continues a transaction beyond \(Self.maxMessages) messages: failing all of it")
            completeHeld(on: queue, succeeded: 0)
            failingRestOfGroup = true
        }
    }

    /// Checks the request and lays out its message; returns what is wrong with it, if anything.
    private func parse(_ chain: DescriptorChain, field: UInt16, flags: UInt32, reader: inout ChainReader, into index: Int) -> String? {
        guard zeroLengthNegotiated else {
            if !refusedDriverLogged {
                logger.error("the driver did not accept VIRTIO_I2C_F_ZERO_LENGTH_REQUEST, which the device requires: failing its requests")
                refusedDriverLogged = true
            }
            return "comes from a driver without VIRTIO_I2C_F_ZERO_LENGTH_REQUEST"
        }
        guard flags & ~VirtioI2C.Flag.known == 0 else { return "sets reserved flags \(flags & ~VirtioI2C.Flag.known)" }
        guard let address = I2CAddress(virtioField: field) else { return "has an invalid address field \(field)" }
        let isRead = flags & VirtioI2C.Flag.read != 0
        let length = isRead ? chain.writableLength - VirtioI2C.inHeaderSize : chain.readableLength - VirtioI2C.outHeaderSize
        if isRead {
            guard chain.readableLength == VirtioI2C.outHeaderSize else { return "is a read with \(chain.readableLength - VirtioI2C.outHeaderSize) bytes to write" }
        } else {
            guard chain.writableLength == VirtioI2C.inHeaderSize else { return "is a write with \(chain.writableLength) device-writable bytes" }
        }
        guard length <= Self.maxMessageLength else { return "has a \(length)-byte buffer (at most \(Self.maxMessageLength))" }
        let data = UnsafeMutableRawBufferPointer(rebasing: scratch[(index * Self.maxMessageLength)...].prefix(length))
        if isRead {
            guard recordReadSegments(chain, length: length, index: index) else {
                return "splits its read buffer into more than \(Self.maxReadSegments) pieces"
            }
        } else {
            reader.read(into: data)
        }
        messages[index] = I2CMessage(address: address, isRead: isRead, data: data)
        return nil
    }

    /// Keeps where a read's `length` data bytes go: the device-writable buffers before the status byte.
    private func recordReadSegments(_ chain: DescriptorChain, length: Int, index: Int) -> Bool {
        var left = length
        for segment in chain.writable where left > 0 && segment.count > 0 {
            guard held[index].segmentCount < Self.maxReadSegments else { return false }
            let n = min(left, segment.count)
            segments[segmentsUsed] = UnsafeMutableRawBufferPointer(start: segment.baseAddress, count: n)
            segmentsUsed += 1
            held[index].segmentCount += 1
            left -= n
        }
        return true
    }

    /// The transaction's last request arrived: run it unless one of its requests is malformed.
    private func finishTransaction(on queue: Virtqueue) {
        let all = UnsafeMutableBufferPointer(rebasing: messages[0..<count])
        let anyMalformed = held[0..<count].contains { $0.malformed }
        let succeeded = anyMalformed ? 0 : bus.execute(all)
        completeHeld(on: queue, succeeded: succeeded)
    }

    /// Completes every held request: the first `succeeded` with OK (reads deliver their data), the rest
    /// with ERR.
    private func completeHeld(on queue: Virtqueue, succeeded: Int) {
        for i in 0..<count {
            let h = held[i]
            if i < succeeded {
                if messages[i].isRead { deliver(messages[i].data, to: h) }
                h.status.pointee = VirtioI2C.Status.ok
                queue.complete(head: h.head, written: UInt32(h.writableLength))
            } else {
                fail(head: h.head, status: h.status, writableLength: h.writableLength, on: queue)
            }
        }
        count = 0
        segmentsUsed = 0
    }

    /// ERR: the status byte at the end of the device-writable bytes; the buffer before it is left as
    /// it was (the driver must not use it, virtio 1.2, 5.19.6.1).
    private func fail(head: UInt16, status: UnsafeMutablePointer<UInt8>, writableLength: Int, on queue: Virtqueue) {
        status.pointee = VirtioI2C.Status.error
        queue.complete(head: head, written: UInt32(clamping: writableLength))
    }

    private func deliver(_ data: UnsafeMutableRawBufferPointer, to h: Held) {
        var offset = 0
        for s in segments[h.firstSegment..<(h.firstSegment + h.segmentCount)] {
            s.baseAddress!.copyMemory(from: data.baseAddress! + offset, byteCount: s.count)
            offset += s.count
        }
    }

    private func lastWritableByte(_ chain: DescriptorChain) -> UnsafeMutablePointer<UInt8>? {
        guard let last = chain.writable.last(where: { $0.count > 0 }) else { return nil }
        return (last.baseAddress! + last.count - 1).assumingMemoryBound(to: UInt8.self)
    }

    /// Logs the first malformed requests at warning level, the rest at debug (a guest may send many).
    private func malformed(_ head: UInt16, _ problem: @autoclosure () -> String) {
        malformedLogged += 1
        if malformedLogged <= 10 {
            logger.warning("request \(head) \(problem())\(malformedLogged == 10 ? " (further malformed requests are logged at debug level)" : "")")
        } else {
            logger.debug("request \(head) \(problem())")
        }
    }
}

import VhostUserKit

/// The controlq: jack, PCM, channel map and control element requests (virtio 1.3, 5.14.6).
extension SoundGroupHandler {
    /// The longest request served: CTL_WRITE (ctl_hdr + ctl_value).
    static let maximumRequest = VirtioSound.ctlHeaderSize + VirtioSound.ctlValueSize

    /// Answers one control request; returns the bytes written into its response.
    func serveControl(_ chain: DescriptorChain, _ state: SoundState) -> Int {
        guard chain.writableLength >= VirtioSound.headerSize else {
            logger.warning("snd: control request \(chain.head) has no room for a status")
            return 0
        }
        guard chain.readableLength >= VirtioSound.headerSize, chain.readableLength <= Self.maximumRequest else {
            return refuse(chain, .badMessage, "a control request of \(chain.readableLength) bytes")
        }
        var request = [UInt8](repeating: 0, count: chain.readableLength)
        var reader = chain.reader()
        request.withUnsafeMutableBytes { _ = reader.read(into: $0) }
        let raw = u32(request, 0)
        guard let code = VirtioSound.Code(rawValue: raw), raw < 0x1000 else {
            return refuse(chain, .notSupported, "control request code \(hex(raw))")
        }
        do throws(Refusal) {
            switch code {
            case .jackInfo, .pcmInfo, .chmapInfo, .ctlInfo:
                return try queryInfo(code, request, chain, state)
            case .jackRemap:
                try expect(request, VirtioSound.jackRemapSize, code)
                let id = Int(u32(request, 4))
                guard id < state.jacks.count else { throw Refusal(.badMessage, "JACK_REMAP of jack \(id) of \(state.jacks.count)") }
                state.jacks[id].association = u32(request, 8)
                state.jacks[id].sequence = u32(request, 12)
                return respond(chain, .ok)
            case .pcmSetParams, .pcmPrepare, .pcmRelease, .pcmStart, .pcmStop:
                try pcmRequest(code, request, state)
                return respond(chain, .ok)
            case .ctlRead, .ctlWrite, .ctlEnumItems, .ctlTLVRead, .ctlTLVWrite, .ctlTLVCommand:
                return try controlElement(code, request, chain, state)
            default:
                throw Refusal(.notSupported, "event code \(hex(raw)) on the controlq")
            }
        } catch {
            return refuse(chain, error.status, error.why)
        }
    }

    struct Refusal: Error {
        let status: VirtioSound.Status
        let why: String
        init(_ status: VirtioSound.Status, _ why: String) { self.status = status; self.why = why }
    }

    private func expect(_ request: [UInt8], _ size: Int, _ code: VirtioSound.Code) throws(Refusal) {
        guard request.count == size else { throw Refusal(.badMessage, "\(code) of \(request.count) bytes (not \(size))") }
    }

    // MARK: Queries

    /// JACK_INFO, PCM_INFO, CHMAP_INFO, CTL_INFO: `count` items from `start_id`, each `size` bytes.
    private func queryInfo(_ code: VirtioSound.Code, _ request: [UInt8], _ chain: DescriptorChain, _ state: SoundState) throws(Refusal) -> Int {
        try expect(request, VirtioSound.queryInfoSize, code)
        let start = Int(u32(request, 4)), count = Int(u32(request, 8)), size = Int(u32(request, 12))
        let (available, itemSize): (Int, Int) = switch code {
        case .jackInfo: (device.jackCount, VirtioSound.jackInfoSize)
        case .pcmInfo: (state.streams.count, VirtioSound.pcmInfoSize)
        case .chmapInfo: (state.streams.count, VirtioSound.chmapInfoSize)
        default: (controlsNegotiated ? device.controlCount : 0, VirtioSound.ctlInfoSize)
        }
        if code == .ctlInfo && !controlsNegotiated { throw Refusal(.notSupported, "CTL_INFO without VIRTIO_SND_F_CTLS") }
        guard start <= available, count <= available - start else {
            throw Refusal(.badMessage, "\(code) of items \(start)..<\(start + count) of \(available)")
        }
        guard size >= itemSize, size <= 4096 else { throw Refusal(.badMessage, "\(code) items of \(size) bytes (they take \(itemSize))") }
        guard chain.writableLength >= VirtioSound.headerSize + count * size else {
            throw Refusal(.badMessage, "\(code) of \(count) items into \(chain.writableLength) bytes")
        }
        var writer = chain.writer()
        writer.write(VirtioSound.Status.ok.rawValue)
        for id in start..<start + count {
            var item = switch code {
            case .jackInfo: jackInfo(id, state)
            case .pcmInfo: pcmInfo(id)
            case .chmapInfo: chmapInfo(id)
            default: controlInfo(id)
            }
            item += [UInt8](repeating: 0, count: size - item.count)
            item.withUnsafeBytes { _ = writer.write($0) }
        }
        return writer.written
    }

    private func jackInfo(_ id: Int, _ state: SoundState) -> [UInt8] {
        let output = device.streams[id].direction == .output
        // HDA pin default configuration: a 1/8" jack, Line Out (green) or Mic In (pink); caps: presence detect.
        let defconf: UInt32 = output ? 0x0101_4010 : 0x01a1_9020
        return le(device.node(of: id)) + le(VirtioSound.jackFeatureRemap) + le(defconf) + le(UInt32(1 << 2))
            + [state.jacks[id].connected ? 1 : 0] + [UInt8](repeating: 0, count: 7)
    }

    private func pcmInfo(_ id: Int) -> [UInt8] {
        let spec = device.streams[id]
        return le(device.node(of: id)) + le(UInt32(0)) + le(spec.formatBits) + le(spec.rateBits)
            + [spec.direction.rawValue, spec.channels.lowerBound, spec.channels.upperBound] + [UInt8](repeating: 0, count: 5)
    }

    private func chmapInfo(_ id: Int) -> [UInt8] {
        let spec = device.streams[id]
        return le(device.node(of: id)) + [spec.direction.rawValue, UInt8(spec.positions.count)] + spec.positions
            + [UInt8](repeating: 0, count: VirtioSound.chmapMaxChannels - spec.positions.count)
    }

    // MARK: PCM

    private func pcmRequest(_ code: VirtioSound.Code, _ request: [UInt8], _ state: SoundState) throws(Refusal) {
        try expect(request, code == .pcmSetParams ? VirtioSound.setParamsSize : VirtioSound.pcmHeaderSize, code)
        let id = Int(u32(request, 4))
        guard id < state.streams.count else { throw Refusal(.badMessage, "\(code) of stream \(id) of \(state.streams.count)") }
        let stream = state.streams[id]
        guard let next = stream.state.after(code) else {
            throw Refusal(.badMessage, "\(code) of stream \(id) in state \(stream.state)")
        }
        switch code {
        case .pcmSetParams:
            let features = u32(request, 16)
            guard features == 0 else { throw Refusal(.notSupported, "stream \(id): PCM features \(hex(features))") }
            guard let format = SampleFormat(virtio: request[21]) else {
                throw Refusal(.notSupported, "stream \(id): format \(request[21])")
            }
            guard Int(request[22]) < VirtioSound.rates.count else { throw Refusal(.notSupported, "stream \(id): rate \(request[22])") }
            let parameters = PCMParameters(bufferBytes: u32(request, 8), periodBytes: u32(request, 12), channels: request[20],
                                           format: format, rate: VirtioSound.rates[Int(request[22])])
            if let why = parameters.refusal(by: stream.spec) { throw Refusal(.notSupported, "stream \(id): \(why)") }
            if stream.parameters != parameters { stream.endpoint = nil }
            stream.parameters = parameters
        case .pcmPrepare:
            guard let parameters = stream.parameters else { throw Refusal(.badMessage, "PREPARE of stream \(id) without parameters") }
            if stream.endpoint == nil {
                do {
                    stream.endpoint = try device.backend.open(stream: id, spec: stream.spec, parameters: parameters)
                } catch {
                    throw Refusal(.ioError, "stream \(id): the \(device.backend.name) backend: \(error)")
                }
            }
            reserveScratch(parameters.periodBytes)
            stream.periods = 0
        case .pcmStart:
            startPacing(id)
        case .pcmStop:
            stopPacing(id)
        case .pcmRelease:
            returnHeld(id, status: .ok)
            stream.endpoint?.flush()
        default:
            break
        }
        stream.state = next
        publish(id)
    }

    // MARK: Control elements

    /// Control `id` is stream `id / 2`'s volume (even) or switch (odd).
    private func controlInfo(_ id: Int) -> [UInt8] {
        let stream = id / 2, isVolume = id % 2 == 0
        let spec = device.streams[stream]
        let name = "PCM \(spec.direction == .output ? "Playback" : "Capture") \(isVolume ? "Volume" : "Switch")"
        var bytes = le(device.node(of: stream))
        bytes += le(isVolume ? VirtioSound.ControlRole.volume.rawValue : VirtioSound.ControlRole.mute.rawValue)
        bytes += le(isVolume ? VirtioSound.ControlType.integer.rawValue : VirtioSound.ControlType.boolean.rawValue)
        bytes += le(VirtioSound.accessRead | VirtioSound.accessWrite) + le(UInt32(1)) + le(device.node(of: stream))
        bytes += Array(name.utf8.prefix(VirtioSound.ctlNameSize - 1)) + [UInt8](repeating: 0, count: VirtioSound.ctlNameSize - min(name.utf8.count, VirtioSound.ctlNameSize - 1))
        bytes += [0, 0, 0, 0]  // the union is 8-aligned
        if isVolume { bytes += le(UInt32(0)) + le(SoundState.Stream.fullVolume) + le(UInt32(1)) }
        return bytes
    }

    private func controlElement(_ code: VirtioSound.Code, _ request: [UInt8], _ chain: DescriptorChain, _ state: SoundState) throws(Refusal) -> Int {
        guard controlsNegotiated else { throw Refusal(.notSupported, "\(code) without VIRTIO_SND_F_CTLS") }
        guard request.count >= VirtioSound.ctlHeaderSize else { throw Refusal(.badMessage, "\(code) of \(request.count) bytes") }
        let id = Int(u32(request, 4))
        guard id < device.controlCount else { throw Refusal(.badMessage, "\(code) of control \(id) of \(device.controlCount)") }
        let stream = state.streams[id / 2], isVolume = id % 2 == 0
        switch code {
        case .ctlRead:
            try expect(request, VirtioSound.ctlHeaderSize, code)
            guard chain.writableLength >= VirtioSound.headerSize + VirtioSound.ctlValueSize else {
                throw Refusal(.badMessage, "CTL_READ into \(chain.writableLength) bytes")
            }
            var writer = chain.writer()
            writer.write(VirtioSound.Status.ok.rawValue)
            writer.write(isVolume ? stream.volume : stream.soundOn ? 1 : 0)
            let zeroes = [UInt8](repeating: 0, count: VirtioSound.ctlValueSize - 4)
            zeroes.withUnsafeBytes { _ = writer.write($0) }
            return writer.written
        case .ctlWrite:
            try expect(request, VirtioSound.ctlHeaderSize + VirtioSound.ctlValueSize, code)
            let value = u32(request, VirtioSound.ctlHeaderSize)
            guard value <= (isVolume ? SoundState.Stream.fullVolume : 1) else {
                throw Refusal(.badMessage, "CTL_WRITE of \(value) to control \(id)")
            }
            if isVolume { stream.volume = value } else { stream.soundOn = value == 1 }
            logger.info("snd: stream \(id / 2) \(isVolume ? "volume \(value)" : value == 1 ? "on" : "muted")")
            publish(id / 2)
            return respond(chain, .ok)
        case .ctlEnumItems:
            throw Refusal(.badMessage, "CTL_ENUM_ITEMS of control \(id), which is not enumerated")
        default:
            throw Refusal(.notSupported, "\(code) of control \(id) (no TLV)")
        }
    }

    // MARK: Responses

    func respond(_ chain: DescriptorChain, _ status: VirtioSound.Status) -> Int {
        var writer = chain.writer()
        writer.write(status.rawValue)
        return writer.written
    }

    private func refuse(_ chain: DescriptorChain, _ status: VirtioSound.Status, _ why: @autoclosure () -> String) -> Int {
        logger.warning("snd: \(status) for \(why())")
        return respond(chain, status)
    }
}

private func u32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
    UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
}
private func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
private func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }

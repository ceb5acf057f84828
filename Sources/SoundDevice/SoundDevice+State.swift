import VhostUserKit

/// DEVICE_STATE: every stream's parameters, state, position (periods transferred) and control values,
/// and every jack's connection and remapping. Host sides are reopened on load for streams that had one.
extension SoundDevice {
    static let stateKind = "vsnd"
    static let stateVersion: UInt16 = 1

    public func saveState() throws -> DeviceState? {
        try state.withLock { state throws(DeviceStateError) in
            guard let state else { throw DeviceStateError.unexpectedState }
            var writer = ByteWriter()
            writer.u32(UInt32(state.streams.count))
            for stream in state.streams {
                writer.u8(stream.state.rawValue)
                writer.bool(stream.parameters != nil)
                if let p = stream.parameters {
                    writer.u32(p.bufferBytes); writer.u32(p.periodBytes); writer.u8(p.channels)
                    writer.u8(p.format.virtio.rawValue); writer.u32(p.rate)
                }
                writer.u32(stream.volume); writer.bool(stream.soundOn); writer.u64(stream.periods)
            }
            writer.u32(UInt32(state.jacks.count))
            for jack in state.jacks {
                writer.bool(jack.connected); writer.u32(jack.association); writer.u32(jack.sequence)
            }
            return DeviceState(kind: Self.stateKind, version: Self.stateVersion, payload: writer.bytes)
        }
    }

    public func loadState(_ saved: DeviceState) throws {
        try saved.expect(kind: Self.stateKind, versions: Self.stateVersion...Self.stateVersion)
        var reader = DeviceStateReader(saved)
        guard try reader.count(max: 1024) == streams.count else { throw DeviceStateError.invalid("a different number of streams") }
        let loaded = SoundState(streams: streams, jacks: hasJacks)
        for (id, stream) in loaded.streams.enumerated() {
            guard let pcmState = PCMState(rawValue: try reader.u8()) else { throw DeviceStateError.invalid("stream \(id): no such PCM state") }
            stream.state = pcmState
            if try reader.bool() {
                let buffer = try reader.u32(), period = try reader.u32(), channels = try reader.u8()
                guard let format = SampleFormat(virtio: try reader.u8()) else { throw DeviceStateError.invalid("stream \(id): no such format") }
                let parameters = PCMParameters(bufferBytes: buffer, periodBytes: period, channels: channels, format: format,
                                               rate: try reader.u32())
                guard parameters.refusal(by: streams[id]) == nil else { throw DeviceStateError.invalid("stream \(id): parameters it does not offer") }
                stream.parameters = parameters
            }
            guard (stream.state == .idle) == (stream.parameters == nil) else { throw DeviceStateError.invalid("stream \(id): state \(stream.state) and parameters disagree") }
            stream.volume = try reader.u32()
            guard stream.volume <= SoundState.Stream.fullVolume else { throw DeviceStateError.invalid("stream \(id): volume \(stream.volume)") }
            stream.soundOn = try reader.bool()
            stream.periods = try reader.u64()
        }
        guard try reader.count(max: 1024) == jackCount else { throw DeviceStateError.invalid("a different number of jacks") }
        for index in loaded.jacks.indices {
            loaded.jacks[index] = SoundState.Jack(connected: try reader.bool(), association: try reader.u32(), sequence: try reader.u32())
        }
        try reader.finish()
        // Host sides for the streams that had one; a backend that refuses fails the load, nothing applied.
        for (id, stream) in loaded.streams.enumerated() where stream.state.acceptsTransfers {
            stream.endpoint = try backend.open(stream: id, spec: streams[id], parameters: stream.parameters!)
        }
        state.withLock { $0 = loaded }
        published.withLock { published in
            for (id, stream) in loaded.streams.enumerated() {
                published[id] = StreamStatus(state: stream.state, parameters: stream.parameters, periods: stream.periods,
                                             volume: stream.volume, soundOn: stream.soundOn)
            }
        }
    }
}

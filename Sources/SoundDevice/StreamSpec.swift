/// What one PCM stream offers the guest, as configured on the command line: its direction, channel
/// range and channel map, formats, rates, and the buffer and period sizes it accepts.
public struct StreamSpec: Equatable, Sendable {
    public var direction: VirtioSound.Direction
    public var channels: ClosedRange<UInt8> = 2...2
    public var formats: [SampleFormat] = [.s16]
    public var rates: [UInt32] = [44100, 48000]
    /// Channel positions (VIRTIO_SND_CHMAP_*) for `channels.upperBound` channels.
    public var positions: [UInt8]
    public var bufferBytes: ClosedRange<UInt32> = 64...(4 << 20)
    public var periodBytes: ClosedRange<UInt32> = 16...(1 << 20)

    public init(direction: VirtioSound.Direction) {
        self.direction = direction
        positions = Self.defaultPositions(channels: 2)
    }

    /// The usual layout for `channels` channels (ALSA's order: FL FR RL RR FC LFE SL SR).
    public static func defaultPositions(channels: Int) -> [UInt8] {
        let names: [String] = switch channels {
        case 1: ["MONO"]
        case 2: ["FL", "FR"]
        case 3: ["FL", "FR", "FC"]
        case 4: ["FL", "FR", "RL", "RR"]
        case 5: ["FL", "FR", "RL", "RR", "FC"]
        case 6: ["FL", "FR", "RL", "RR", "FC", "LFE"]
        case 7: ["FL", "FR", "RL", "RR", "FC", "LFE", "RC"]
        default: ["FL", "FR", "RL", "RR", "FC", "LFE", "SL", "SR"]
        }
        return names.prefix(channels).map { UInt8(VirtioSound.positionNames.firstIndex(of: $0)!) }
    }

    /// VIRTIO_SND_PCM_FMT_* bits.
    public var formatBits: UInt64 { formats.reduce(0) { $0 | 1 << UInt64($1.virtio.rawValue) } }
    /// VIRTIO_SND_PCM_RATE_* bits.
    public var rateBits: UInt64 {
        rates.reduce(0) { bits, rate in bits | 1 << UInt64(VirtioSound.rates.firstIndex(of: rate)!) }
    }

    /// Parses `key=value` settings separated by `:`, e.g.
    /// `channels=1-8:formats=u8,s16,s24,s32,float:rates=8000,48000,192000:chmap=FL,FR:buffer=64-65536:period=16-16384`.
    public static func parse(_ text: String, direction: VirtioSound.Direction) throws(StreamSpecError) -> StreamSpec {
        var spec = StreamSpec(direction: direction)
        var positions: [UInt8]?
        for setting in text.split(separator: ":") where !setting.isEmpty {
            let parts = setting.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw .malformed(String(setting)) }
            let (key, value) = (parts[0], parts[1])
            let items = value.split(separator: ",").map(String.init)
            switch key {
            case "channels":
                let range = try range(value, key)
                guard range.lowerBound >= 1, range.upperBound <= 8 else { throw .outOfRange(key, value, "1 to 8") }
                spec.channels = UInt8(range.lowerBound)...UInt8(range.upperBound)
            case "formats":
                spec.formats = try items.map { item throws(StreamSpecError) in
                    guard let format = SampleFormat(rawValue: item.lowercased()) else {
                        throw .outOfRange(key, item, SampleFormat.allCases.map(\.rawValue).joined(separator: ", "))
                    }
                    return format
                }
            case "rates":
                spec.rates = try items.map { item throws(StreamSpecError) in
                    guard let rate = UInt32(item), rate >= 8000, rate <= 192_000, VirtioSound.rates.contains(rate) else {
                        throw .outOfRange(key, item, "one of \(VirtioSound.rates.filter { $0 >= 8000 && $0 <= 192_000 }.map(String.init).joined(separator: ", "))")
                    }
                    return rate
                }
            case "chmap":
                positions = try items.map { item throws(StreamSpecError) in
                    guard let position = VirtioSound.positionNames.firstIndex(of: item.uppercased()), position >= 2 else {
                        throw .outOfRange(key, item, "a channel position such as FL, FR, FC, LFE, RL, RR, SL, SR, MONO")
                    }
                    return UInt8(position)
                }
            case "buffer":
                let range = try range(value, key)
                guard range.lowerBound >= 1, range.upperBound <= 64 << 20 else { throw .outOfRange(key, value, "1 to 64 MiB") }
                spec.bufferBytes = UInt32(range.lowerBound)...UInt32(range.upperBound)
            case "period":
                let range = try range(value, key)
                guard range.lowerBound >= 1, range.upperBound <= 16 << 20 else { throw .outOfRange(key, value, "1 to 16 MiB") }
                spec.periodBytes = UInt32(range.lowerBound)...UInt32(range.upperBound)
            default:
                throw .unknownKey(key)
            }
        }
        guard !spec.formats.isEmpty, !spec.rates.isEmpty else { throw .malformed(text) }
        let wanted = Int(spec.channels.upperBound)
        spec.positions = positions ?? defaultPositions(channels: wanted)
        guard spec.positions.count == wanted else {
            throw .outOfRange("chmap", "\(spec.positions.count) positions", "one per channel (\(wanted))")
        }
        return spec
    }

    private static func range(_ value: String, _ key: String) throws(StreamSpecError) -> ClosedRange<Int> {
        let bounds = value.split(separator: "-", maxSplits: 1).map { Int($0) }
        guard let low = bounds.first ?? nil, let high = bounds.count == 2 ? bounds[1] : low, low <= high else {
            throw .malformed("\(key)=\(value)")
        }
        return low...high
    }
}

public enum StreamSpecError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case unknownKey(String)
    case outOfRange(String, String, String)

    public var description: String {
        switch self {
        case let .malformed(text): "malformed stream setting \"\(text)\" (expected key=value settings separated by ':')"
        case let .unknownKey(key): "unknown stream setting \"\(key)\" (channels, formats, rates, chmap, buffer, period)"
        case let .outOfRange(key, value, allowed): "\(key): \(value) is not allowed (\(allowed))"
        }
    }
}

/// The virtio-snd wire format (virtio 1.3, 5.14 "Sound Device"): queues, request and event codes,
/// statuses, the info structures' sizes, PCM formats and rates, channel positions and control
/// elements (VIRTIO_SND_F_CTLS). Nothing else in the device knows these numbers.
public enum VirtioSound {
    public static let deviceID: UInt32 = 25
    /// VIRTIO_SND_F_CTLS: the device has control elements.
    public static let featureControls: UInt64 = 1 << 0

    public static let controlQueue = 0, eventQueue = 1, txQueue = 2, rxQueue = 3

    /// `struct virtio_snd_config`: jacks, streams, chmaps, controls (le32 each).
    public static let configSize = 16

    /// Request codes (VIRTIO_SND_R_*), event codes (VIRTIO_SND_EVT_*) and statuses (VIRTIO_SND_S_*).
    public enum Code: UInt32, Sendable {
        case jackInfo = 1, jackRemap
        case pcmInfo = 0x0100, pcmSetParams, pcmPrepare, pcmRelease, pcmStart, pcmStop
        case chmapInfo = 0x0200
        case ctlInfo = 0x0300, ctlEnumItems, ctlRead, ctlWrite, ctlTLVRead, ctlTLVWrite, ctlTLVCommand
        case jackConnected = 0x1000, jackDisconnected
        case pcmPeriodElapsed = 0x1100, pcmXrun
        case ctlNotify = 0x1200
    }

    public enum Status: UInt32, Sendable {
        case ok = 0x8000, badMessage, notSupported, ioError
    }

    /// VIRTIO_SND_D_*.
    public enum Direction: UInt8, Sendable {
        case output = 0, input = 1
    }

    /// `struct virtio_snd_hdr`.
    public static let headerSize = 4
    /// `struct virtio_snd_query_info`: hdr, start_id, count, size.
    public static let queryInfoSize = 16
    /// `struct virtio_snd_jack_info`: hda_fn_nid, features, hda_reg_defconf, hda_reg_caps, connected, padding[7].
    public static let jackInfoSize = 24
    /// `struct virtio_snd_jack_remap`: hdr, jack_id, association, sequence.
    public static let jackRemapSize = 16
    /// `struct virtio_snd_pcm_info`: hda_fn_nid, features, formats (le64), rates (le64), direction,
    /// channels_min, channels_max, padding[5].
    public static let pcmInfoSize = 32
    /// `struct virtio_snd_pcm_hdr`: hdr, stream_id.
    public static let pcmHeaderSize = 8
    /// `struct virtio_snd_pcm_set_params`: pcm_hdr, buffer_bytes, period_bytes, features, channels,
    /// format, rate, padding.
    public static let setParamsSize = 24
    /// `struct virtio_snd_pcm_xfer`: stream_id.
    public static let xferHeaderSize = 4
    /// `struct virtio_snd_pcm_status`: status, latency_bytes.
    public static let pcmStatusSize = 8
    /// `struct virtio_snd_chmap_info`: hda_fn_nid, direction, channels, positions[18].
    public static let chmapInfoSize = 24
    public static let chmapMaxChannels = 18
    /// `struct virtio_snd_event`: hdr, data.
    public static let eventSize = 8
    /// `struct virtio_snd_ctl_hdr`: hdr, control_id.
    public static let ctlHeaderSize = 8
    /// `struct virtio_snd_ctl_info`: hda_fn_nid, role, type, access, count, index, name[44], then the
    /// value union, whose le64 members align it to 8: 4 bytes of padding after the name (offset 72),
    /// 24 bytes of union: 96 in all (as Linux and QEMU lay it out).
    public static let ctlInfoSize = 96
    public static let ctlInfoValueOffset = 72
    public static let ctlNameSize = 44
    /// `struct virtio_snd_ctl_value`: a 512-byte union.
    public static let ctlValueSize = 512
    /// `struct virtio_snd_ctl_enum_item`.
    public static let ctlEnumItemSize = 64

    /// VIRTIO_SND_JACK_F_REMAP.
    public static let jackFeatureRemap: UInt32 = 1 << 0

    /// VIRTIO_SND_CTL_ROLE_*, _TYPE_*, _ACCESS_* (bit numbers), _EVT_MASK_*.
    public enum ControlRole: UInt32, Sendable { case undefined = 0, volume, mute, gain }
    public enum ControlType: UInt32, Sendable { case boolean = 0, integer, integer64, enumerated, bytes, iec958 }
    public static let accessRead: UInt32 = 1 << 0, accessWrite: UInt32 = 1 << 1
    public static let controlEventMaskValue: UInt16 = 1 << 0

    /// VIRTIO_SND_PCM_FMT_*: the bit numbers of `virtio_snd_pcm_info.formats`.
    public enum Format: UInt8, CaseIterable, Sendable {
        case imaADPCM = 0, muLaw, aLaw, s8, u8, s16, u16, s18_3, u18_3, s20_3, u20_3, s24_3, u24_3, s20, u20,
             s24, u24, s32, u32, float, float64, dsdU8, dsdU16, dsdU32, iec958Subframe
    }

    /// VIRTIO_SND_PCM_RATE_*: the bit numbers of `virtio_snd_pcm_info.rates`, and their frequencies.
    public static let rates: [UInt32] = [5512, 8000, 11025, 16000, 22050, 32000, 44100, 48000, 64000,
                                         88200, 96000, 176400, 192000, 384000]

    /// VIRTIO_SND_CHMAP_*: channel positions, by the names ALSA uses for them.
    public static let positionNames: [String] = [
        "NONE", "NA", "MONO", "FL", "FR", "RL", "RR", "FC", "LFE", "SL", "SR", "RC", "FLC", "FRC", "RLC",
        "RRC", "FLW", "FRW", "FLH", "FCH", "FRH", "TC", "TFL", "TFR", "TFC", "TRL", "TRR", "TRC", "TFLC",
        "TFRC", "TSL", "TSR", "LLFE", "RLFE", "BC", "BLC", "BRC",
    ]
}

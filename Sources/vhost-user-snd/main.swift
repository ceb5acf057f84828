import ArgumentParser
import SoundDevice
import VhostUserCLI

/// vhost-user-snd: a virtio sound card for any vhost-user VMM.
struct SoundCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-snd",
        abstract: "vhost-user backend for virtio-snd: configurable PCM streams, jacks and volume controls.",
        discussion: """
            Serves one virtio sound card to a VMM (QEMU's vhost-user-snd-pci, crosvm) over a unix socket. \
            Every --playback and --capture adds a stream (none given: one of each with the defaults); \
            a stream's SPEC is key=value settings separated by ':': channels=MIN-MAX (1 to 8), \
            formats=u8,s16,s24,s32,float, rates=8000,...,192000, chmap=FL,FR,... (one position per \
            channel of the maximum), buffer=MIN-MAX and period=MIN-MAX in bytes. Defaults: \
            channels=2, formats=s16, rates=44100,48000. Each stream has a jack and, with \
            VIRTIO_SND_F_CTLS, a "PCM Playback/Capture Volume" (0-100, applied to the samples) and \
            "Switch" control. Periods complete at the stream's pace on the monotonic clock. Backends: \
            null (silence), wav (--wav-dir: playback-N.wav per playback stream; --capture-file: a \
            WAV file captured in a loop, converted to the stream's format), alsa (--alsa-playback and \
            --alsa-capture name host PCMs; a backend thread per stream does the blocking I/O; S16 and \
            the nearest rate with conversion when the PCM lacks the guest's format), pipewire \
            (--pipewire-playback and --pipewire-capture name the sink and source nodes, else the session \
            manager links the streams; PipeWire converts every guest format itself). See vhost-user-devices(7) \
            for the options every daemon shares.
            """)

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, parsing: .singleValue, help: ArgumentHelp("Add a playback stream (repeatable).", valueName: "spec"))
    var playback: [String] = []

    @Option(name: .long, parsing: .singleValue, help: ArgumentHelp("Add a capture stream (repeatable).", valueName: "spec"))
    var capture: [String] = []

    @Option(name: .long, help: ArgumentHelp("Where the streams' samples go: null, wav, alsa or pipewire.", valueName: "backend"))
    var backend: String = "null"

    @Option(name: .long, help: ArgumentHelp("alsa: the host PCM for playback streams.", valueName: "pcm"))
    var alsaPlayback: String = "default"

    @Option(name: .long, help: ArgumentHelp("alsa: the host PCM for capture streams.", valueName: "pcm"))
    var alsaCapture: String = "default"

    @Option(name: .long, help: ArgumentHelp("pipewire: the sink node for playback streams (default: the session manager's choice).", valueName: "node"))
    var pipewirePlayback: String?

    @Option(name: .long, help: ArgumentHelp("pipewire: the source node for capture streams (default: the session manager's choice).", valueName: "node"))
    var pipewireCapture: String?

    @Option(name: .long, help: ArgumentHelp("wav: the directory for playback-N.wav recordings.", valueName: "dir"))
    var wavDir: String?

    @Option(name: .long, help: ArgumentHelp("wav: the WAV file capture streams play in a loop.", valueName: "path"))
    var captureFile: String?

    @Flag(name: .long, help: "Do not offer control elements (VIRTIO_SND_F_CTLS).")
    var noControls = false

    @Flag(name: .long, help: "Do not give the streams jacks.")
    var noJacks = false

    @Flag(name: .long, help: "Do not send a PCM_PERIOD_ELAPSED event per period.")
    var noPeriodEvents = false

    func validate() throws {
        _ = try streams()
        guard ["null", "wav", "alsa", "pipewire"].contains(backend) else {
            throw ValidationError("--backend: \(backend) is not one of null, wav, alsa, pipewire")
        }
        if backend != "pipewire", pipewirePlayback != nil || pipewireCapture != nil {
            throw ValidationError("--pipewire-playback and --pipewire-capture belong to --backend pipewire")
        }
        if backend != "wav", wavDir != nil || captureFile != nil {
            throw ValidationError("--wav-dir and --capture-file belong to --backend wav")
        }
    }

    func streams() throws -> [StreamSpec] {
        do {
            if playback.isEmpty && capture.isEmpty {
                return [StreamSpec(direction: .output), StreamSpec(direction: .input)]
            }
            return try playback.map { try StreamSpec.parse($0, direction: .output) }
                + capture.map { try StreamSpec.parse($0, direction: .input) }
        } catch {
            throw ValidationError("\(error)")
        }
    }

    /// Beyond the daemon runtime's: the wav backend rewrites its recordings' headers in place (files are
    /// opened before the sandbox); the alsa backend opens a host PCM at PREPARE (its device nodes, the
    /// sound ioctls: types 'A' PCM and 'U' control, and what alsa-lib's plugins do around them).
    static func identity(alsa: Bool) -> DaemonIdentity {
        let alsaCalls: SandboxPolicy = ["openat", "pread64", "faccessat", "faccessat2", "access", "readlink", "readlinkat", "uname",
                                         "getdents64", "statx", "fstatfs", "pipe2",
                                         SystemCallRule("ioctl", where: .argument(1, masked: 0xff00, equals: 0x4100)),
                                         SystemCallRule("ioctl", where: .argument(1, masked: 0xff00, equals: 0x5500))]
        let base: SandboxPolicy = ["pwrite64", "lseek"]
        return DaemonIdentity(name: "vhost-user-snd", type: "sound", sandbox: alsa ? base.union(alsaCalls) : base)
    }

    func run() throws {
        let streams = try streams()
        runDaemon(Self.identity(alsa: backend == "alsa"), options: daemon) {
            let soundBackend: any SoundBackend = switch backend {
            case "wav": try WAVBackend(directory: wavDir, captureFile: captureFile,
                                       playbackStreams: streams.indices.filter { streams[$0].direction == .output })
            case "alsa": ALSABackend(playback: alsaPlayback, capture: alsaCapture)
            case "pipewire": try PipeWireBackend(playback: pipewirePlayback, capture: pipewireCapture)
            default: NullBackend()
            }
            return SoundDevice(streams: streams, backend: soundBackend, controls: !noControls, jacks: !noJacks,
                               periodEvents: !noPeriodEvents)
        }
    }
}

SoundCommand.main()

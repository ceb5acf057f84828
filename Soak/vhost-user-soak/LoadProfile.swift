import VhostUserTesting

/// One buffer of a request: a byte range of the request's data slab in guest memory.
struct SlabBuffer {
    var offset: Int
    var length: Int
    var writable: Bool
}

/// A request a load profile wants sent: its buffers in chain order (readable ones first) and the
/// profile's own number for it, handed back on completion.
struct LoadRequest {
    var buffers: [SlabBuffer]
    var tag: Int
    /// The most buffers a request may have.
    static let maxBuffers = 6
}

/// What the soak knows about one kind of device: how to start its daemon, what requests to send and
/// how to check each completion. A new device adds one file with a `LoadProfile` and puts its type in
/// `loadProfiles` below; the soak driver, the disconnect schedule and the resource checks are shared.
protocol LoadProfile: AnyObject {
    /// The device's name on the command line and in the report ("rng", "blk").
    static var name: String { get }
    /// Daemon variants besides the plain one: name suffix and extra arguments (e.g. another engine).
    static var variants: [(suffix: String, arguments: [String])] { get }

    /// `files` is a directory on tmpfs for the daemon's files (the soak removes it afterwards).
    init(files: String) throws

    /// Makes what the daemon needs with the package's executables in `binaries` (rpmb's image, made by
    /// `vhost-user-rpmb --create`), before the daemon starts.
    func prepare(binaries: String) throws

    /// The daemon executable (a product of this package) and its arguments besides --socket-path.
    var executable: String { get }
    var arguments: [String] { get }
    /// The most queues, and the largest queue, the soak may set up.
    var maxQueues: Int { get }
    var maxQueueSize: Int { get }
    /// Bytes of guest memory one request may use (each request in flight has a slab of this size).
    var slabBytes: Int { get }

    /// A new request for queue `queue` with its data put in `slab`, or nil when none can be made now
    /// (a profile with a model may have every region busy).
    func makeRequest(queue: Int, slab: UnsafeMutableRawBufferPointer, random: inout SoakRandom) -> LoadRequest?
    /// Checks a completion: nil when it is right, else what is wrong.
    func complete(_ tag: Int, usedLength: UInt32, slab: UnsafeMutableRawBufferPointer) -> String?
    /// The request's ring was given up while it was in flight: it may or may not have been carried out.
    func abandon(_ tag: Int)
    /// Device-specific checks of the control plane on a connection that is set up (config space...):
    /// nil when right, else what is wrong.
    func checkControlPlane(_ frontend: FakeFrontend, _ setup: FrontendSetup) throws -> String?
    /// Bytes of request data whose content was checked.
    var bytesVerified: Int { get }
}

extension LoadProfile {
    static var variants: [(suffix: String, arguments: [String])] { [] }
    func prepare(binaries: String) throws {}
    func checkControlPlane(_ frontend: FakeFrontend, _ setup: FrontendSetup) throws -> String? { nil }
}

/// Every device the soak knows.
var loadProfiles: [any LoadProfile.Type] { [RNGLoad.self, BlockLoad.self, I2CLoad.self, RPMBLoad.self, GPIOLoad.self, InputLoad.self, ConsoleLoad.self, VsockLoad.self, SoundLoad.self] }

/// A daemon configuration the soak can run: a profile and extra daemon arguments.
struct SoakTarget {
    let name: String
    let profile: any LoadProfile.Type
    let extraArguments: [String]

    /// Every profile's plain daemon and its variants, in registry order.
    static var all: [SoakTarget] {
        loadProfiles.flatMap { p in
            [SoakTarget(name: p.name, profile: p, extraArguments: [])]
                + p.variants.map { SoakTarget(name: "\(p.name)-\($0.suffix)", profile: p, extraArguments: $0.arguments) }
        }
    }
}

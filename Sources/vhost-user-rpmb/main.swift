import ArgumentParser
import Logging
import RPMBDevice
import VhostUserCLI
#if canImport(Glibc)
import Glibc
#endif

/// vhost-user-rpmb: a virtio replay-protected memory block for any vhost-user VMM.
struct RPMBCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-rpmb",
        abstract: "vhost-user backend for virtio-rpmb: a replay-protected memory block in an image file.",
        discussion: """
            Serves one virtio-rpmb device (virtio id 28) to a VMM over a unix socket: authenticated reads and \
            writes of 256-byte blocks (HMAC-SHA256 with a key programmed once, a write counter against replay), \
            in the eMMC RPMB frame format. The data, the key and the write counter live in the image named by \
            --image, which --create makes; every authenticated write is committed crash-consistently (the new \
            state and its data are synced before the write is acknowledged), so a crash leaves either the old or \
            the new state. The image holds the key: keep it readable by the daemon only. There is no upstream \
            guest driver or QEMU device: attach it through a VMM's generic vhost-user device. See \
            vhost-user-devices(7) for the options every daemon shares.
            """)

    /// Beyond the daemon runtime's: reading, writing and syncing the image.
    static let identity = DaemonIdentity(name: "vhost-user-rpmb", type: "rpmb", features: ["image"],
                                         sandbox: ["pread64", "pwrite64", "fdatasync"])

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, help: ArgumentHelp("The RPMB image: data, key and write counter.", valueName: "path"))
    var image: String?

    @Flag(name: .long, help: "Create a new image at --image (of --capacity; never over an existing file) and exit.")
    var create = false

    @Option(name: .long, help: ArgumentHelp("With --create: the capacity, 128K to 16M in steps of 128K.", valueName: "size"))
    var capacity: RPMBCapacity = RPMBCapacity(units: 32)

    @Option(name: .long, help: ArgumentHelp("With --create: program the authentication key from this file (32 bytes), for test images.", valueName: "path"))
    var keyFile: String?

    @Option(name: .long, help: ArgumentHelp("Most blocks one authenticated write may carry (max_wr_cnt, 1-255).", valueName: "N"))
    var maxWriteBlocks: Int = 16

    @Option(name: .long, help: ArgumentHelp("Most blocks one authenticated read may return (max_rd_cnt, 1-255).", valueName: "N"))
    var maxReadBlocks: Int = 32

    @Flag(inversion: .prefixedNo, help: "Sync the image before acknowledging a write (without: a daemon crash is survived, a host crash may not be).")
    var fsync = true

    func validate() throws {
        guard image != nil || daemon.printCapabilities else { throw ValidationError("--image PATH is required") }
        guard keyFile == nil || create else { throw ValidationError("--key-file is used with --create only") }
        guard (1...255).contains(maxWriteBlocks) else { throw ValidationError("--max-write-blocks must be 1 to 255") }
        guard (1...255).contains(maxReadBlocks) else { throw ValidationError("--max-read-blocks must be 1 to 255") }
    }

    func run() throws {
        if create { return try createImage() }
        runDaemon(Self.identity, options: daemon) {
            let file = try PosixImageFile(path: image!, durable: fsync)
            let opened = try RPMBImage(file: KillAfterStepImageFile.wrapping(file))
            let logger = Logger(label: "vhost-user-rpmb")
            logger.info("image \(image!): \(opened.capacityUnits * 128) KiB, key \(opened.key == nil ? "not programmed" : "programmed"), write counter \(opened.writeCounter)")
            return try RPMBDevice(image: opened, limits: .init(maxWriteBlocks: maxWriteBlocks, maxReadBlocks: maxReadBlocks), logger: logger)
        }
    }

    private func createImage() throws {
        var key: AuthenticationKey?
        if let keyFile {
            let bytes = try readKeyFile(keyFile)
            guard let k = AuthenticationKey(bytes) else {
                throw ValidationError("--key-file \(keyFile) must hold exactly 32 bytes (it holds \(bytes.count))")
            }
            key = k
        }
        do {
            try RPMBImage.create(path: image!, capacityUnits: capacity.units, key: key)
        } catch {
            throw ValidationError(error.description)
        }
        print("created \(image!): \(capacity.units * 128) KiB, key \(key == nil ? "not programmed" : "programmed from \(keyFile!)")")
    }

    /// The key file's bytes (at most 33 are read: a longer file is refused by the caller).
    private func readKeyFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ValidationError("cannot open --key-file \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 33)
        var count = 0
        while count < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, 33 - count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw ValidationError("cannot read --key-file \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            count += n
        }
        return Array(bytes[0..<count])
    }
}

/// `--capacity`: `128K` ... `16M`, a multiple of 128 KiB.
struct RPMBCapacity: ExpressibleByArgument {
    let units: Int
    init(units: Int) { self.units = units }

    init?(argument text: String) {
        let scales: [Character: Int] = ["k": 1 << 10, "K": 1 << 10, "m": 1 << 20, "M": 1 << 20]
        var digits = Substring(text)
        var scale = 1
        if let last = digits.last, let s = scales[last] { scale = s; digits = digits.dropLast() }
        guard let n = Int(digits), n > 0, n <= 16 << 20 / scale else { return nil }
        let bytes = n * scale
        guard bytes % RPMBImage.unitBytes == 0, (1...RPMBImage.maxCapacityUnits).contains(bytes / RPMBImage.unitBytes) else { return nil }
        units = bytes / RPMBImage.unitBytes
    }

    var defaultValueDescription: String { "\(units * 128)K" }
}

RPMBCommand.main()

import ArgumentParser
import I2CDevice
import Logging
import VhostUserCLI

/// vhost-user-i2c: a virtio I2C adapter for any vhost-user VMM.
struct I2CCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vhost-user-i2c",
        abstract: "vhost-user backend for virtio-i2c: host I2C clients and simulated ones on one guest bus.",
        discussion: """
            Serves one virtio-i2c adapter to a VMM (QEMU's vhost-user-i2c-pci, cloud-hypervisor, crosvm) over a \
            unix socket. The guest sees one bus holding exactly the clients given here: host clients passed \
            through from /dev/i2c-N (--device-list; I2C_RDWR, or the equivalent SMBus transfer when the adapter \
            cannot do plain I2C), simulated AT24-style EEPROMs whose contents live in a file (--eeprom), and \
            LM75-style temperature sensors (--sensor). Every other address answers with an error, so the guest \
            cannot probe the host's bus. Requests the driver chains with FAIL_NEXT run as one transaction. \
            Addresses are 7-bit (0x50) or 10-bit (0x123/10). The daemon keeps its socket across VMM reconnects \
            and exits on SIGTERM or SIGINT. See vhost-user-devices(7) for the options every daemon shares.
            """)

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, parsing: .singleValue,
            help: ArgumentHelp("Pass host clients through: an adapter (its number N of /dev/i2c-N, or its name in /sys/bus/i2c/devices/i2c-N/name) and the addresses the guest may reach on it, e.g. 1:0x50,0x51. Repeat for more adapters.",
                               valueName: "adapter:addr,..."))
    var deviceList: [String] = []

    @Option(name: .long, parsing: .singleValue,
            help: ArgumentHelp("Simulate an AT24-style EEPROM: addr=, size= in bytes (128-65536, default 4096), page= (the part's page size by default), file= holding its contents. Parts up to 2 KiB occupy one address per 256 bytes. Repeatable.",
                               valueName: "addr=A,size=N,page=N,file=PATH"))
    var eeprom: [String] = []

    @Option(name: .long, parsing: .singleValue,
            help: ArgumentHelp("Simulate an LM75-style temperature sensor at addr= reading temp= degrees Celsius (default 21.5). Repeatable.",
                               valueName: "addr=A,temp=C"))
    var sensor: [String] = []

    func parsedConfiguration() throws -> I2CConfiguration {
        var configuration = I2CConfiguration()
        do {
            configuration.passthrough = try deviceList.map { s throws(I2CConfigurationError) in try I2CConfiguration.parsePassthrough(s) }
            configuration.eeproms = try eeprom.map { s throws(I2CConfigurationError) in try I2CConfiguration.parseEEPROM(s) }
            configuration.sensors = try sensor.map { s throws(I2CConfigurationError) in try I2CConfiguration.parseSensor(s) }
        } catch {
            throw ValidationError(error.description)
        }
        return configuration
    }

    func validate() throws {
        guard !daemon.printCapabilities else { return }
        let configuration = try parsedConfiguration()
        guard !(configuration.passthrough.isEmpty && configuration.eeproms.isEmpty && configuration.sensors.isEmpty) else {
            throw ValidationError("put at least one client on the bus: --device-list, --eeprom or --sensor")
        }
    }

    /// Beyond the daemon runtime's: the i2c-dev ioctls of the passthrough (the EEPROMs' files are
    /// mapped at start-up and need no calls).
    static let identity = DaemonIdentity(
        name: "vhost-user-i2c", type: "i2c",
        sandbox: SandboxPolicy(DevI2CAdapter.servingRequests.map { SystemCallRule("ioctl", where: .argument(1, equals: $0)) }))

    func run() throws {
        let configuration = try parsedConfiguration()
        runDaemon(Self.identity, options: daemon) {
            let logger = Logger(label: "vhost-user-i2c")
            let bus = try I2CBus.make(configuration)
            logger.info("bus: \(bus.reachableAddresses.map(\.description).joined(separator: " "))")
            return I2CDevice(bus: bus, logger: logger)
        }
    }
}

I2CCommand.main()

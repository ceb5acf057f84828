#if canImport(Glibc)
import Glibc
#endif

/// What the command line puts on the bus: host adapters with the client addresses the guest may reach
/// on each, simulated EEPROMs and sensors.
public struct I2CConfiguration: Sendable, Equatable {
    /// A host adapter (`/dev/i2c-N`) by number or by the name in /sys/bus/i2c/devices/i2c-N/name.
    public enum AdapterName: Sendable, Equatable, CustomStringConvertible {
        case number(Int)
        case name(String)
        public var description: String {
            switch self {
            case .number(let n): "i2c-\(n)"
            case .name(let s): "\"\(s)\""
            }
        }
    }

    public struct Passthrough: Sendable, Equatable {
        public var adapter: AdapterName
        public var addresses: [I2CAddress]
    }

    public var passthrough: [Passthrough] = []
    public var eeproms: [EEPROMConfiguration] = []
    public var sensors: [SensorConfiguration] = []

    public init() {}

    /// Parses one `--device-list` entry: `ADAPTER:ADDR[,ADDR...]`, ADAPTER a number or an adapter's name,
    /// each ADDR `0x50` (7-bit) or `0x123/10` (10-bit).
    public static func parsePassthrough(_ text: String) throws(I2CConfigurationError) -> Passthrough {
        guard let colon = text.lastIndex(of: ":") else {
            throw I2CConfigurationError("--device-list \(text): expected ADAPTER:ADDR[,ADDR...]")
        }
        let adapterText = text[..<colon], list = text[text.index(after: colon)...]
        guard !adapterText.isEmpty else { throw I2CConfigurationError("--device-list \(text): no adapter before ':'") }
        let adapter: AdapterName = adapterText.allSatisfy(\.isNumber) ? .number(Int(adapterText)!) : .name(String(adapterText))
        var addresses: [I2CAddress] = []
        for item in list.split(separator: ",", omittingEmptySubsequences: false) {
            guard let address = I2CAddress(parsing: item) else {
                throw I2CConfigurationError("--device-list \(text): '\(item)' is not an address (0x08-0x77, or 0x000-0x3ff/10)")
            }
            addresses.append(address)
        }
        return Passthrough(adapter: adapter, addresses: addresses)
    }

    /// Parses `--eeprom addr=0x50,size=4096,page=32,file=PATH` (size and page optional).
    public static func parseEEPROM(_ text: String) throws(I2CConfigurationError) -> EEPROMConfiguration {
        let fields = try keyValues(text, option: "--eeprom", allowed: ["addr", "size", "page", "file"])
        guard let address = try fields["addr"].map({ (s: String) throws(I2CConfigurationError) in try parseAddress(s, option: "--eeprom") }) else {
            throw I2CConfigurationError("--eeprom \(text): addr= is required")
        }
        guard let file = fields["file"], !file.isEmpty else { throw I2CConfigurationError("--eeprom \(text): file= is required") }
        let size = try fields["size"].map { (s: String) throws(I2CConfigurationError) in try integer(s, "size", option: "--eeprom") } ?? 4096
        let page = try fields["page"].map { (s: String) throws(I2CConfigurationError) in try integer(s, "page", option: "--eeprom") }
        let configuration = EEPROMConfiguration(address: address, size: size, pageSize: page, file: file)
        if let problem = configuration.problem { throw I2CConfigurationError("--eeprom \(text): \(problem)") }
        return configuration
    }

    /// Parses `--sensor addr=0x48[,temp=21.5]`.
    public static func parseSensor(_ text: String) throws(I2CConfigurationError) -> SensorConfiguration {
        let fields = try keyValues(text, option: "--sensor", allowed: ["addr", "temp"])
        guard let address = try fields["addr"].map({ (s: String) throws(I2CConfigurationError) in try parseAddress(s, option: "--sensor") }) else {
            throw I2CConfigurationError("--sensor \(text): addr= is required")
        }
        var configuration = SensorConfiguration(address: address)
        if let t = fields["temp"] {
            guard let celsius = Double(t) else { throw I2CConfigurationError("--sensor \(text): temp=\(t) is not a number") }
            configuration.celsius = celsius
        }
        if let problem = configuration.problem { throw I2CConfigurationError("--sensor \(text): \(problem)") }
        return configuration
    }

    private static func keyValues(_ text: String, option: String, allowed: Set<String>) throws(I2CConfigurationError) -> [String: String] {
        var fields: [String: String] = [:]
        for item in text.split(separator: ",") {
            let pair = item.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, allowed.contains(String(pair[0])) else {
                throw I2CConfigurationError("\(option) \(text): '\(item)' is not one of \(allowed.sorted().map { $0 + "=" }.joined(separator: ", "))")
            }
            guard fields.updateValue(String(pair[1]), forKey: String(pair[0])) == nil else {
                throw I2CConfigurationError("\(option) \(text): \(pair[0])= given twice")
            }
        }
        return fields
    }

    private static func parseAddress(_ text: String, option: String) throws(I2CConfigurationError) -> I2CAddress {
        guard let address = I2CAddress(parsing: text) else {
            throw I2CConfigurationError("\(option): addr=\(text) is not an address (0x08-0x77, or 0x000-0x3ff/10)")
        }
        return address
    }

    private static func integer(_ text: String, _ key: String, option: String) throws(I2CConfigurationError) -> Int {
        guard let n = parseInteger(text) else { throw I2CConfigurationError("\(option): \(key)=\(text) is not a number") }
        return n
    }
}

extension I2CConfiguration.AdapterName {
    /// The adapter's number: as given, or the `i2c-N` whose sysfs name matches.
    public func resolve(sysfs: String = "/sys/bus/i2c/devices") throws(I2CConfigurationError) -> Int {
        switch self {
        case .number(let n): return n
        case .name(let wanted):
            guard let dir = opendir(sysfs) else { throw I2CConfigurationError("cannot list \(sysfs) to find adapter \(self)") }
            defer { closedir(dir) }
            var found: [Int] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard name.hasPrefix("i2c-"), let n = Int(name.dropFirst(4)),
                      readFirstLine("\(sysfs)/\(name)/name") == wanted else { continue }
                found.append(n)
            }
            guard found.count == 1 else {
                throw I2CConfigurationError(found.isEmpty ? "no adapter named \(self) in \(sysfs)"
                                                          : "several adapters are named \(self): \(found.sorted().map { "i2c-\($0)" }.joined(separator: ", "))")
            }
            return found[0]
        }
    }
}

/// The first line of a small text file, or nil.
func readFirstLine(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 256)
    let n = read(fd, &buffer, buffer.count)
    guard n > 0 else { return nil }
    return String(decoding: buffer[0..<n].prefix { $0 != 0x0a }, as: UTF8.self)
}

extension I2CBus {
    /// Makes the bus the configuration describes: opens every host adapter (by name through sysfs),
    /// checks it can reach 10-bit addresses where asked, maps every EEPROM's file.
    public static func make(_ configuration: I2CConfiguration, sysfs: String = "/sys/bus/i2c/devices",
                            openAdapter: (Int) throws(HostAdapterError) -> any HostAdapter = { n throws(HostAdapterError) in try DevI2CAdapter(number: n) })
        throws(I2CConfigurationError) -> I2CBus {
        var adapters: [(adapter: any HostAdapter, addresses: [I2CAddress])] = []
        for entry in configuration.passthrough {
            let number = try entry.adapter.resolve(sysfs: sysfs)
            let adapter: any HostAdapter
            do { adapter = try openAdapter(number) } catch { throw I2CConfigurationError(error.description) }
            if entry.addresses.contains(where: \.isTenBit) && adapter.functionality & UInt64(HostFunctionality.tenBitAddresses) == 0 {
                throw I2CConfigurationError("adapter i2c-\(number) cannot address 10-bit clients (no I2C_FUNC_10BIT_ADDR)")
            }
            adapters.append((adapter, entry.addresses))
        }
        var clients: [any SimulatedClient] = []
        for e in configuration.eeproms {
            do { clients.append(try EEPROM(e)) } catch { throw I2CConfigurationError(error.description) }
        }
        clients += configuration.sensors.map(TemperatureSensor.init)
        let bus = try I2CBus(clients: clients, adapters: adapters)
        guard !bus.reachableAddresses.isEmpty else {
            throw I2CConfigurationError("no clients on the bus: give --device-list, --eeprom or --sensor")
        }
        return bus
    }
}

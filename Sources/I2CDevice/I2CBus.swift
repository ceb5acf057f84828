import Logging
import VhostUserKit

/// The one bus the guest sees: the client addresses it may reach, each routed to a simulated client
/// or to a host adapter. Every other address is refused, so the guest cannot probe the host's bus.
/// Clients and adapters are touched under the bus's lock only (`execute`, `withLock`).
public final class I2CBus: @unchecked Sendable {
    /// Where an address leads.
    enum Route {
        case simulated(client: Int, block: Int)
        case host(adapter: Int)
    }

    public let clients: [any SimulatedClient]
    public let adapters: [any HostAdapter]
    private var routes: [Route?]
    private let lock = Locked(())
    let logger: Logger

    /// Routes `clients`' addresses and each adapter's `hostAddresses`; throws on an address claimed twice.
    public init(clients: [any SimulatedClient], adapters: [(adapter: any HostAdapter, addresses: [I2CAddress])],
                logger: Logger = Logger(label: "vhost-user-i2c")) throws(I2CConfigurationError) {
        self.clients = clients
        self.adapters = adapters.map(\.adapter)
        self.logger = logger
        routes = Array(repeating: nil, count: I2CAddress.tableSize)
        for (c, client) in clients.enumerated() {
            for (block, address) in client.addresses.enumerated() { try claim(address, .simulated(client: c, block: block)) }
        }
        for (a, entry) in adapters.enumerated() {
            for address in entry.addresses { try claim(address, .host(adapter: a)) }
        }
    }

    private func claim(_ address: I2CAddress, _ route: Route) throws(I2CConfigurationError) {
        guard routes[address.tableIndex] == nil else { throw I2CConfigurationError("address \(address) is claimed twice") }
        routes[address.tableIndex] = route
    }

    /// Every address the guest may reach, in order.
    public var reachableAddresses: [I2CAddress] {
        routes.indices.compactMap { i in
            routes[i] == nil ? nil : i < 0x80 ? I2CAddress(sevenBit: UInt16(i)) : I2CAddress(tenBit: UInt16(i - 0x80))
        }
    }

    func route(_ address: I2CAddress) -> Route? { routes[address.tableIndex] }

    /// Runs `messages` as one transaction and returns how many succeeded, in order: all of them, or
    /// the ones before the first failure (the rest fail with it, as FAIL_NEXT asks). A transaction
    /// that names a refused address, or that spans a host adapter and anything else, fails whole before
    /// any message runs; a host adapter's transaction succeeds or fails as one.
    public func execute(_ messages: UnsafeMutableBufferPointer<I2CMessage>) -> Int {
        lock.withLock { _ in executeLocked(messages) }
    }

    /// Runs `body` while no transaction runs, e.g. to read a simulated client's state in a test.
    public func withLock<R: Sendable>(_ body: () -> R) -> R {
        lock.withLock { _ in body() }
    }

    private func executeLocked(_ messages: UnsafeMutableBufferPointer<I2CMessage>) -> Int {
        guard let first = messages.first else { return 0 }
        guard let firstRoute = route(first.address) else { return refuse(first.address) }
        switch firstRoute {
        case .host(let adapter):
            for m in messages.dropFirst() {
                guard case .host(adapter)? = route(m.address) else { return refuse(m.address, acrossAdapters: true) }
            }
            return runOnHost(adapters[adapter], messages) ? messages.count : 0
        case .simulated:
            for m in messages.dropFirst() {
                guard let r = route(m.address) else { return refuse(m.address) }
                guard case .simulated = r else { return refuse(m.address, acrossAdapters: true) }
            }
            for (i, m) in messages.enumerated() {
                guard case let .simulated(c, block)? = route(m.address) else { return i }
                let acked = m.isRead ? clients[c].read(into: m.data, block: block)
                                     : clients[c].write(UnsafeRawBufferPointer(m.data), block: block)
                guard acked else {
                    logger.debug("client \(m.address) refused message \(i) (\(m.isRead ? "read" : "write") of \(m.data.count) bytes)")
                    return i
                }
            }
            return messages.count
        }
    }

    private func refuse(_ address: I2CAddress, acrossAdapters: Bool = false) -> Int {
        if acrossAdapters {
            logger.debug("refused a transaction that reaches \(address) on another adapter: it cannot run as one")
        } else {
            logger.debug("refused address \(address): not on the device list")
        }
        return 0
    }

    private func runOnHost(_ adapter: any HostAdapter, _ messages: UnsafeMutableBufferPointer<I2CMessage>) -> Bool {
        if adapter.functionality & UInt64(HostFunctionality.plainI2C) != 0 {
            let error = adapter.transfer(messages)
            if error != 0 { logger.debug("I2C_RDWR of \(messages.count) messages to \(messages[0].address) failed: errno \(error)") }
            return error == 0
        }
        guard var transfer = SMBusTransfer(messages, functionality: adapter.functionality) else {
            logger.debug("a transaction of \(messages.count) messages to \(messages[0].address) has no SMBus form this adapter can run")
            return false
        }
        let error = adapter.smbus(&transfer)
        guard error == 0 else {
            logger.debug("SMBus \(transfer.type) to \(transfer.address) failed: errno \(error)")
            return false
        }
        transfer.deliver(into: messages)
        return true
    }
}

/// I2C_FUNC bits the bus checks.
enum HostFunctionality {
    static let plainI2C: UInt32 = 0x0000_0001       // I2C_FUNC_I2C
    static let tenBitAddresses: UInt32 = 0x0000_0002 // I2C_FUNC_10BIT_ADDR
}

/// A configuration the daemon cannot start with.
public struct I2CConfigurationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

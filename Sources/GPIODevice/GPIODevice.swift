import VhostUserKit

/// virtio-gpio (virtio 1.2, 5.17): a requestq for line requests and, with VIRTIO_GPIO_F_IRQ, an eventq
/// for interrupts. Both queues share the lines' state, so they form one queue group served by one
/// `GPIOGroupHandler`; the host side is a `GPIOChip` (simulated or a Linux chip) whose descriptors the
/// group watches.
public final class GPIODevice: VhostUserDevice {
    public let lineCount: Int
    /// The GET_NAMES block, encoded once.
    let names: [UInt8]
    private let config: [UInt8]
    private let offersIRQ: Bool

    /// What a running group borrows: the chip and the lines' interrupt state. One thread holds it at a
    /// time: it moves through the lock (the group's worker takes it at start and gives it back at stop;
    /// the control thread resets it only while no group runs).
    struct State: @unchecked Sendable {
        let chip: any GPIOChip
        var interrupts: LineInterrupts
    }
    let state: Locked<State?>

    /// Serves `chip`; `interrupts` offers VIRTIO_GPIO_F_IRQ (and an eventq that is used).
    public init(chip: any GPIOChip, interrupts: Bool = true) {
        lineCount = chip.lineCount
        names = VirtioGPIO.namesBlock(chip.lineNames)
        config = VirtioGPIO.config(lineCount: chip.lineCount, namesSize: names.count)
        offersIRQ = interrupts
        state = Locked(State(chip: chip, interrupts: LineInterrupts(lineCount: chip.lineCount)))
    }

    public var virtioDeviceID: UInt32 { VirtioGPIO.deviceID }
    public var deviceFeatures: UInt64 { offersIRQ ? VirtioGPIO.featureIRQ : 0 }
    /// requestq and eventq (QEMU's vhost-user-gpio always sets both up).
    public var queueCount: Int { 2 }
    public var maxQueueSize: Int { 256 }
    public var configSize: Int { VirtioGPIO.configSize }
    public var queueGroups: [[Int]] { [[VirtioGPIO.requestQueue, VirtioGPIO.eventQueue]] }

    public func readConfig(offset: Int, count: Int) -> [UInt8] { Array(config[offset..<offset + count]) }

    public func makeGroupHandler(queues: [Int], features: UInt64) -> any GroupHandler {
        GPIOGroupHandler(device: self, interrupts: features & VirtioGPIO.featureIRQ != 0)
    }

    /// Lines back to their initial state, interrupts disabled (the queues are stopped).
    public func reset() {
        state.withLock { state in
            guard let current = state else { return }
            current.chip.reset()
            state!.interrupts.reset()
        }
    }

    /// The running group's handler takes the state when it starts...
    func takeState() -> State? { state.withLock { s in defer { s = nil }; return s } }
    /// ...and gives it back when it stops.
    func giveBack(_ returned: State) { state.withLock { $0 = returned } }
}

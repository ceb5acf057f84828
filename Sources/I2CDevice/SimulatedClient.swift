/// A client on the simulated bus. Called from the request queue's worker only (under the bus lock).
public protocol SimulatedClient: AnyObject {
    /// The addresses it answers: one, or several for a part that selects a block by its address.
    var addresses: [I2CAddress] { get }
    /// A write message to `addresses[block]`, ended by a stop or a repeated start; false is a NACK.
    /// An empty `data` is a quick write (only the address byte on the wire).
    func write(_ data: UnsafeRawBufferPointer, block: Int) -> Bool
    /// A read message from `addresses[block]` filling `buffer`; false is a NACK. An empty `buffer` is
    /// a quick read.
    func read(into buffer: UnsafeMutableRawBufferPointer, block: Int) -> Bool
}

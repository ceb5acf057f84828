/// What a queue does with a chain it cannot process at all.
public enum MalformedChainPolicy: Sendable {
    /// Return it to the driver with a length of 0 and go on: right where an empty completion means
    /// "nothing for you" (entropy, input events).
    case returnEmpty
    /// Stop the queue (and signal the error eventfd): right where a completion without a written status
    /// would read as success to the driver (a block request's status byte).
    case stopQueue
}

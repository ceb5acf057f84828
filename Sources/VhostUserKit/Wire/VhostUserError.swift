/// Everything that can go wrong on the control path, with the context needed to log it once.
public enum VhostUserError: Error, Equatable, CustomStringConvertible {
    /// The peer closed the socket in the middle of a message.
    case truncatedMessage(expected: Int, received: Int)
    case payloadTooLarge(request: UInt32, size: UInt32)
    case tooManyFileDescriptors
    case badVersion(flags: UInt32)
    case badPayloadSize(request: FrontendRequest, expected: Int, actual: Int)
    case badFileDescriptorCount(request: FrontendRequest, expected: Int, actual: Int)
    case unknownRequest(UInt32)
    case unsupportedRequest(FrontendRequest)
    /// A well-formed request the daemon refuses (a bad ring size, an address outside memory...).
    case invalidRequest(FrontendRequest, String)
    /// The device refused a request it serves itself (`VhostUserDevice.handleFrontendRequest`).
    case deviceRefused(request: UInt32, String)
    /// A system call on the connection failed (the socket broke, a descriptor for the peer could not be made).
    case system(SystemError)
    /// The daemon is shutting down: the wait for the peer was abandoned.
    case interrupted

    /// Whether the connection cannot go on after this error (the byte stream is out of sync or the peer
    /// broke the framing rules); other errors are answered with a failure ack and the session goes on.
    public var dropsConnection: Bool {
        switch self {
        case .truncatedMessage, .payloadTooLarge, .tooManyFileDescriptors, .badVersion, .system, .interrupted: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case let .truncatedMessage(expected, received): "truncated message: expected \(expected) bytes, got \(received)"
        case let .payloadTooLarge(request, size): "request \(request) announces a \(size)-byte payload (limit \(MessageHeader.maxPayloadSize))"
        case .tooManyFileDescriptors: "too many file descriptors attached to one message"
        case let .badVersion(flags): "unsupported protocol version in flags 0x\(String(flags, radix: 16))"
        case let .badPayloadSize(request, expected, actual): "\(request): payload of \(actual) bytes, expected \(expected)"
        case let .badFileDescriptorCount(request, expected, actual): "\(request): \(actual) file descriptors attached, expected \(expected)"
        case let .unknownRequest(number): "unknown request \(number)"
        case let .unsupportedRequest(request): "\(request) is not supported by this back-end"
        case let .invalidRequest(request, why): "\(request): \(why)"
        case let .deviceRefused(request, why): "request \(request): the device refused it: \(why)"
        case let .system(error): error.description
        case .interrupted: "shutting down"
        }
    }
}

extension VhostUserError {
    /// Runs `body`, turning a failed system call into `.system`, which drops the connection.
    static func fromSystem<T>(_ body: () throws(SystemError) -> T) throws(VhostUserError) -> T {
        do { return try body() } catch { throw .system(error) }
    }
}

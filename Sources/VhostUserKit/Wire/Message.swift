/// One vhost-user message: a header, its payload bytes and the descriptors that came with it.
public struct Message: Sendable {
    public var header: MessageHeader
    public var payload: [UInt8]
    public var descriptors: [OwnedDescriptor]

    public init(header: MessageHeader, payload: [UInt8], descriptors: [OwnedDescriptor] = []) {
        self.header = header
        self.payload = payload
        self.descriptors = descriptors
    }

    /// The request, when its number is one the spec defines.
    public var request: FrontendRequest? { FrontendRequest(rawValue: header.request) }
    public var needsReply: Bool { header.flags.contains(.needReply) }
}

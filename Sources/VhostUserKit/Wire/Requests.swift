/// Front-end request types (vhost-user spec, "Front-end message types").
public enum FrontendRequest: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case getFeatures = 1
    case setFeatures = 2
    case setOwner = 3
    case resetOwner = 4
    case setMemTable = 5
    case setLogBase = 6
    case setLogFd = 7
    case setVringNum = 8
    case setVringAddr = 9
    case setVringBase = 10
    case getVringBase = 11
    case setVringKick = 12
    case setVringCall = 13
    case setVringErr = 14
    case getProtocolFeatures = 15
    case setProtocolFeatures = 16
    case getQueueNum = 17
    case setVringEnable = 18
    case sendRarp = 19
    case netSetMtu = 20
    case setBackendReqFd = 21
    case iotlbMsg = 22
    case setVringEndian = 23
    case getConfig = 24
    case setConfig = 25
    case createCryptoSession = 26
    case closeCryptoSession = 27
    case postcopyAdvise = 28
    case postcopyListen = 29
    case postcopyEnd = 30
    case getInflightFd = 31
    case setInflightFd = 32
    case gpuSetSocket = 33
    case resetDevice = 34
    case vringKick = 35
    case getMaxMemSlots = 36
    case addMemReg = 37
    case remMemReg = 38
    case setStatus = 39
    case getStatus = 40
    case getSharedObject = 41
    case setDeviceStateFd = 42
    case checkDeviceState = 43
    case getShmemConfig = 44

    /// The spec's name, as in `VHOST_USER_GET_FEATURES`.
    public var description: String {
        let words = "\(self)".reduce(into: "") { name, c in
            if c.isUppercase { name += "_" }
            name += c.uppercased()
        }
        return "VHOST_USER_" + words
    }

    /// Requests whose reply carries a payload: they are answered whether or not NEED_REPLY is set.
    public var hasPayloadReply: Bool {
        switch self {
        case .getFeatures, .getProtocolFeatures, .getVringBase, .getQueueNum, .getConfig, .getInflightFd,
             .getMaxMemSlots, .getStatus, .setLogBase, .getSharedObject, .setDeviceStateFd, .checkDeviceState,
             .getShmemConfig, .postcopyAdvise:
            return true
        default:
            return false
        }
    }
}

/// Back-end request types, sent by the daemon on the back-end channel (SET_BACKEND_REQ_FD).
public enum BackendRequest: UInt32, Sendable, CaseIterable {
    case iotlbMsg = 1
    case configChangeMsg = 2
    case vringHostNotifierMsg = 3
    case vringCall = 4
    case vringErr = 5
    case sharedObjectAdd = 6
    case sharedObjectRemove = 7
    case sharedObjectLookup = 8
    case shmemMap = 9
    case shmemUnmap = 10
}

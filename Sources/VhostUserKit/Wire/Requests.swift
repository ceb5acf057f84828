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

    /// The spec's name, as in `VHOST_USER_GET_FEATURES`. Spelled out: interpolating `self` here would
    /// call this property again (the type is CustomStringConvertible) and recurse until the stack overflows.
    public var description: String {
        switch self {
        case .getFeatures: "VHOST_USER_GET_FEATURES"
        case .setFeatures: "VHOST_USER_SET_FEATURES"
        case .setOwner: "VHOST_USER_SET_OWNER"
        case .resetOwner: "VHOST_USER_RESET_OWNER"
        case .setMemTable: "VHOST_USER_SET_MEM_TABLE"
        case .setLogBase: "VHOST_USER_SET_LOG_BASE"
        case .setLogFd: "VHOST_USER_SET_LOG_FD"
        case .setVringNum: "VHOST_USER_SET_VRING_NUM"
        case .setVringAddr: "VHOST_USER_SET_VRING_ADDR"
        case .setVringBase: "VHOST_USER_SET_VRING_BASE"
        case .getVringBase: "VHOST_USER_GET_VRING_BASE"
        case .setVringKick: "VHOST_USER_SET_VRING_KICK"
        case .setVringCall: "VHOST_USER_SET_VRING_CALL"
        case .setVringErr: "VHOST_USER_SET_VRING_ERR"
        case .getProtocolFeatures: "VHOST_USER_GET_PROTOCOL_FEATURES"
        case .setProtocolFeatures: "VHOST_USER_SET_PROTOCOL_FEATURES"
        case .getQueueNum: "VHOST_USER_GET_QUEUE_NUM"
        case .setVringEnable: "VHOST_USER_SET_VRING_ENABLE"
        case .sendRarp: "VHOST_USER_SEND_RARP"
        case .netSetMtu: "VHOST_USER_NET_SET_MTU"
        case .setBackendReqFd: "VHOST_USER_SET_BACKEND_REQ_FD"
        case .iotlbMsg: "VHOST_USER_IOTLB_MSG"
        case .setVringEndian: "VHOST_USER_SET_VRING_ENDIAN"
        case .getConfig: "VHOST_USER_GET_CONFIG"
        case .setConfig: "VHOST_USER_SET_CONFIG"
        case .createCryptoSession: "VHOST_USER_CREATE_CRYPTO_SESSION"
        case .closeCryptoSession: "VHOST_USER_CLOSE_CRYPTO_SESSION"
        case .postcopyAdvise: "VHOST_USER_POSTCOPY_ADVISE"
        case .postcopyListen: "VHOST_USER_POSTCOPY_LISTEN"
        case .postcopyEnd: "VHOST_USER_POSTCOPY_END"
        case .getInflightFd: "VHOST_USER_GET_INFLIGHT_FD"
        case .setInflightFd: "VHOST_USER_SET_INFLIGHT_FD"
        case .gpuSetSocket: "VHOST_USER_GPU_SET_SOCKET"
        case .resetDevice: "VHOST_USER_RESET_DEVICE"
        case .vringKick: "VHOST_USER_VRING_KICK"
        case .getMaxMemSlots: "VHOST_USER_GET_MAX_MEM_SLOTS"
        case .addMemReg: "VHOST_USER_ADD_MEM_REG"
        case .remMemReg: "VHOST_USER_REM_MEM_REG"
        case .setStatus: "VHOST_USER_SET_STATUS"
        case .getStatus: "VHOST_USER_GET_STATUS"
        case .getSharedObject: "VHOST_USER_GET_SHARED_OBJECT"
        case .setDeviceStateFd: "VHOST_USER_SET_DEVICE_STATE_FD"
        case .checkDeviceState: "VHOST_USER_CHECK_DEVICE_STATE"
        case .getShmemConfig: "VHOST_USER_GET_SHMEM_CONFIG"
        }
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

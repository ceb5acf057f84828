/// The devices a headless host can offer without any input hardware, fed through the control socket:
/// configs close to what QEMU's own virtio-keyboard, -mouse and -tablet say, plus a touchscreen.
public enum SyntheticKind: String, CaseIterable, Sendable {
    case keyboard, mouse, tablet, touch

    /// The absolute range of the tablet's and touchscreen's axes (QEMU's tablet uses the same).
    public static let absoluteRange = InputDeviceDescription.AbsInfo(min: 0, max: 32767)
    /// Touch points the touchscreen tracks at once.
    public static let touchSlots: Int32 = 10
    /// BUS_VIRTUAL.
    static let busVirtual: UInt16 = 0x06

    /// The config the device of this kind answers with, named `name` (default "vhost-user <kind>").
    public func description(name: String? = nil) -> InputDeviceDescription {
        let ids = InputDeviceDescription.DeviceIDs(bustype: Self.busVirtual, vendor: 0x1af4,
                                                   product: UInt16(0x100 + Self.allCases.firstIndex(of: self)!), version: 1)
        let buttons: Set<UInt16> = [0x110, 0x111, 0x112, 0x113, 0x114]  // BTN_LEFT ... BTN_EXTRA
        let label = name ?? "vhost-user \(rawValue)"
        switch self {
        case .keyboard:
            // Every key of a full PC keyboard (KEY_ESC ... KEY_MICMUTE), the three lock LEDs.
            return .init(name: label, serial: "vhost-user-input-keyboard", ids: ids,
                         codes: [EventType.key: Set(1...248), EventType.led: [0, 1, 2]])
        case .mouse:
            return .init(name: label, serial: "vhost-user-input-mouse", ids: ids, properties: [InputProperty.pointer],
                         codes: [EventType.key: buttons, EventType.rel: [0, 1, 6, 8]])
        case .tablet:
            return .init(name: label, serial: "vhost-user-input-tablet", ids: ids,
                         codes: [EventType.key: buttons, EventType.abs: [Axis.x, Axis.y], EventType.rel: [6, 8]],
                         axes: [Axis.x: Self.absoluteRange, Axis.y: Self.absoluteRange])
        case .touch:
            let range = Self.absoluteRange
            return .init(name: label, serial: "vhost-user-input-touch", ids: ids, properties: [InputProperty.direct],
                         codes: [EventType.key: [0x14a],  // BTN_TOUCH
                                 EventType.abs: [Axis.x, Axis.y, Axis.mtSlot, Axis.mtPositionX, Axis.mtPositionY, Axis.mtTrackingID]],
                         axes: [Axis.x: range, Axis.y: range, Axis.mtPositionX: range, Axis.mtPositionY: range,
                                Axis.mtSlot: .init(min: 0, max: Self.touchSlots - 1),
                                Axis.mtTrackingID: .init(min: 0, max: 65535)])
        }
    }
}

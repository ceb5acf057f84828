/// What a `TemperatureSensor` is: its address and the temperature it reads.
public struct SensorConfiguration: Sendable, Equatable {
    public var address: I2CAddress
    /// Degrees Celsius, within the part's range (-55 to +125), read in 0.5 °C steps.
    public var celsius: Double

    public init(address: I2CAddress, celsius: Double = 21.5) {
        self.address = address
        self.celsius = celsius
    }

    public var problem: String? { (-55...125).contains(celsius) ? nil : "temp must be between -55 and 125 (°C)" }
}

/// An LM75-style temperature sensor: a pointer register selecting one of four registers, read and
/// written most significant byte first.
///
/// - 0 temperature (16 bits, read-only): a 9-bit two's complement value in 0.5 °C steps, left-aligned;
/// - 1 configuration (8 bits);
/// - 2 THYST and 3 TOS (16 bits, same format; power-on 75 °C and 80 °C).
///
/// A write message is the pointer byte, then data for the register it selects. Reads return the selected
/// register from its first byte, repeating it when the master reads on. Refused with a NACK: a pointer
/// above 3, data for the temperature register, more data bytes than the register holds, half of a
/// 16-bit register.
public final class TemperatureSensor: SimulatedClient {
    public enum Register: UInt8, Sendable { case temperature = 0, configuration, hysteresis, overTemperature }

    public let addresses: [I2CAddress]
    public private(set) var pointer = Register.temperature
    public private(set) var temperature: UInt16
    public private(set) var configuration: UInt8 = 0
    public private(set) var hysteresis: UInt16 = 75 << 8
    public private(set) var overTemperature: UInt16 = 80 << 8

    public init(_ configuration: SensorConfiguration) {
        addresses = [configuration.address]
        temperature = Self.encode(celsius: configuration.celsius)
    }

    /// The register format: half degrees in bits 15:7.
    public static func encode(celsius: Double) -> UInt16 {
        UInt16(bitPattern: Int16((celsius * 2).rounded()) << 7)
    }

    public static func decode(_ value: UInt16) -> Double { Double(Int16(bitPattern: value) >> 7) / 2 }

    public func write(_ data: UnsafeRawBufferPointer, block: Int) -> Bool {
        guard let first = data.first else { return true }
        guard let register = Register(rawValue: first) else { return false }
        pointer = register
        let payload = data.count - 1
        switch register {
        case .temperature:
            return payload == 0
        case .configuration:
            guard payload <= 1 else { return false }
            if payload == 1 { configuration = data[1] }
        case .hysteresis, .overTemperature:
            guard payload <= 2 else { return false }
            guard payload == 2 else { return payload == 0 }
            let value = (UInt16(data[1]) << 8 | UInt16(data[2])) & 0xff80
            if register == .hysteresis { hysteresis = value } else { overTemperature = value }
        }
        return true
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, block: Int) -> Bool {
        let value: UInt16, width: Int
        switch pointer {
        case .temperature: (value, width) = (temperature, 2)
        case .configuration: (value, width) = (UInt16(configuration) << 8, 1)
        case .hysteresis: (value, width) = (hysteresis, 2)
        case .overTemperature: (value, width) = (overTemperature, 2)
        }
        for i in 0..<buffer.count {
            buffer[i] = i % width == 0 ? UInt8(value >> 8) : UInt8(value & 0xff)
        }
        return true
    }
}

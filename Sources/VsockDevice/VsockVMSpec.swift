#if canImport(Glibc)
import Glibc
#endif

/// One VM of a multi-VM daemon: `guest-cid=N,socket=PATH,uds-path=PATH[,group=NAME]` (the `--vm`
/// option, or a line of `--config FILE`). VMs with the same group reach each other by CID.
public struct VsockVMSpec: Equatable, Sendable {
    public var guestCID: UInt64
    public var socket: String
    public var udsPath: String
    public var group: String?

    public init(guestCID: UInt64, socket: String, udsPath: String, group: String? = nil) {
        self.guestCID = guestCID
        self.socket = socket
        self.udsPath = udsPath
        self.group = group
    }

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func parse(_ spec: String) throws(ParseError) -> VsockVMSpec {
        var cid: UInt64?, socket: String?, uds: String?, group: String?
        for field in spec.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = field.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[1].isEmpty else { throw ParseError(description: "\(spec): \"\(field)\" is not key=value") }
            switch parts[0] {
            case "guest-cid":
                guard let value = UInt64(parts[1]), VirtioVsock.isValidGuestCID(value) else {
                    throw ParseError(description: "\(spec): guest-cid must be 3 to 4294967294")
                }
                cid = value
            case "socket": socket = parts[1]
            case "uds-path": uds = parts[1]
            case "group", "groups": group = parts[1]
            default: throw ParseError(description: "\(spec): unknown key \(parts[0]) (guest-cid, socket, uds-path, group)")
            }
        }
        guard let cid, let socket, let uds else { throw ParseError(description: "\(spec): needs guest-cid, socket and uds-path") }
        return VsockVMSpec(guestCID: cid, socket: socket, udsPath: uds, group: group)
    }

    /// The specs of a config file: one per line; blank lines and lines starting with # are skipped.
    public static func parseFile(_ text: String) throws(ParseError) -> [VsockVMSpec] {
        var specs: [VsockVMSpec] = []
        for line in text.split(separator: "\n") {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            specs.append(try parse(String(trimmed)))
        }
        return specs
    }

    /// The specs in the file at `path` (`--config`).
    public static func load(path: String) throws(ParseError) -> [VsockVMSpec] {
        guard let file = fopen(path, "r") else { throw ParseError(description: "--config: cannot open \(path)") }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= 1 << 20 else { throw ParseError(description: "--config: \(path) is larger than 1 MiB") }
        }
        return try parseFile(String(decoding: bytes, as: UTF8.self))
    }

    /// Checks a set of VMs: unique CIDs, sockets and host paths.
    public static func validate(_ specs: [VsockVMSpec]) throws(ParseError) {
        for (i, a) in specs.enumerated() {
            for b in specs[(i + 1)...] {
                if a.guestCID == b.guestCID { throw ParseError(description: "guest CID \(a.guestCID) is given twice") }
                if a.socket == b.socket { throw ParseError(description: "socket \(a.socket) is given twice") }
                if a.udsPath == b.udsPath { throw ParseError(description: "uds-path \(a.udsPath) is given twice") }
            }
        }
    }
}

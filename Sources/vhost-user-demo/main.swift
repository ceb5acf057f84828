// vhost-user-demo: starts vhost-user-rng, boots a small Linux guest under QEMU (TCG) with
// vhost-user-rng-pci attached and the virtio_rng driver loaded, and reads /dev/hwrng in the guest.
// Run by scripts/demo after the build; extra arguments go to vhost-user-rng (e.g. --getrandom,
// --max-bytes 262144 --period-ms 100).

import Foundation
import GuestBed

let bytes = 1_048_576
let script = """
    set -e
    echo "kernel: $(uname -r)"
    echo "rng_current: $(cat /sys/class/misc/hw_random/rng_current)"
    head -c \(bytes) /dev/hwrng > rng
    echo "bytes read from /dev/hwrng: $(wc -c < rng)"
    echo "sha256: $(sha256sum rng | cut -d' ' -f1)"
    echo "first 64 bytes:"
    head -c 64 rng | hexdump -C
    """

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("-h") || arguments.contains("--help") {
    print("""
        usage: vhost-user-demo [vhost-user-rng options...]
        Boots a Linux guest under QEMU whose /dev/hwrng is served by vhost-user-rng, reads \(bytes) bytes
        from it and shows them. The options are passed to vhost-user-rng (see vhost-user-rng --help).
        Needs scripts/install-deps and scripts/prepare-guest (scripts/demo runs both).
        """)
    exit(0)
}

func indented(_ text: String) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false).map { "  \($0)" }.joined(separator: "\n")
}

func fail(_ message: String) -> Never {
    print("demo: FAILED — \(message)")
    exit(1)
}

let clock = ContinuousClock()
let start = clock.now
let daemonCommand = (["vhost-user-rng"] + arguments).joined(separator: " ")
print("demo: starting \(daemonCommand) from \(GuestTestBed.binaryDirectory)")
print("demo: booting Linux under \(GuestTestBed.qemu) (TCG) with vhost-user-rng-pci and virtio_rng...")

let result: GuestResult
do {
    result = try GuestTestBed.run(
        daemons: [GuestDaemon(executable: "vhost-user-rng", arguments: arguments, qemuDevice: "vhost-user-rng-pci")],
        modules: ["virtio_rng"], script: script, timeout: .seconds(120))
} catch {
    print("\(error)")
    fail("the guest did not run (details above)")
}
let elapsed = clock.now - start
let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18

print("\n--- guest output (exit status \(result.status)) ---")
print(indented(result.output.hasSuffix("\n") ? String(result.output.dropLast()) : result.output))
print("\n--- vhost-user-rng log ---")
let daemonLog = result.daemonLogs.first ?? ""
print(indented(daemonLog.hasSuffix("\n") ? String(daemonLog.dropLast()) : daemonLog))
print()

var values: [String: String] = [:]
for line in result.output.split(separator: "\n") {
    if let colon = line.firstIndex(of: ":") {
        values[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
}
guard result.status == 0 else { fail("the guest script exited with status \(result.status)") }
guard let current = values["rng_current"], current.hasPrefix("virtio_rng") else {
    fail("the guest's current hwrng is \(values["rng_current"] ?? "unknown"), not virtio_rng")
}
guard values["bytes read from /dev/hwrng"] == String(bytes) else {
    fail("the guest read \(values["bytes read from /dev/hwrng"] ?? "no") bytes from /dev/hwrng, not \(bytes)")
}
print("demo: OK — the guest read \(bytes) bytes from virtio_rng through vhost-user-rng"
    + " (\(String(format: "%.1f", seconds)) s for daemon start, boot and read)")

// Checks the test bed itself against a known-good vhost-user backend: qemu-storage-daemon's
// vhost-user-blk export, with data going both ways through /dev/vda.

import Foundation
@testable import GuestBed
import Testing

@Suite(.enabled(if: GuestTestBed.enabled, "VHOST_USER_SKIP_GUEST_TESTS=1"))
struct GuestTestBedSelfTests {
    /// qemu-storage-daemon prints nothing when ready, but `--daemonize` returns only once its
    /// exports exist; this wrapper then prints the readiness line and stops the daemon on SIGTERM.
    static let qsdWrapper = """
        set -e
        qemu-storage-daemon --daemonize --pidfile "$1.pid" \
            --blockdev driver=file,node-name=f,filename="$2" \
            --export type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path="$1",writable=on
        pid=$(cat "$1.pid")
        sleep 100000 &
        trap 'kill $pid $!; exit 0' TERM INT
        echo "listening on $1" >&2
        wait $!
        """

    @Test func guestReadsAndWritesADiskServedByQemuStorageDaemon() throws {
        let image = FileManager.default.temporaryDirectory
            .appendingPathComponent("guest-bed-\(UUID().uuidString.prefix(8)).img").path
        defer { try? FileManager.default.removeItem(atPath: image) }
        let hostPattern = "written-by-host-\(UUID().uuidString)"
        var contents = Data(count: 8 << 20)
        contents.replaceSubrange(1 << 20..<(1 << 20) + hostPattern.utf8.count, with: Data(hostPattern.utf8))
        try contents.write(to: URL(fileURLWithPath: image))

        let qsd = GuestDaemon(
            command: ["/bin/sh", "-c", Self.qsdWrapper, "qsd", "{socket}", image],
            readinessLine: "listening on {socket}",
            qemuDevice: "vhost-user-blk-pci")
        let result = try GuestTestBed.run(
            daemons: [qsd], modules: ["virtio_blk"],
            script: """
                set -e
                echo "size=$(cat /sys/block/vda/size)"
                echo "host=$(dd if=/dev/vda bs=1M skip=1 count=1 2>/dev/null | head -c \(hostPattern.utf8.count))"
                printf 'written-by-guest' | dd of=/dev/vda bs=1M seek=2 conv=notrunc,fsync 2>/dev/null
                """,
            timeout: .seconds(120))

        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("size=16384"), "\(result.output)")
        #expect(result.output.contains("host=\(hostPattern)"), "\(result.output)")
        let after = try Data(contentsOf: URL(fileURLWithPath: image))
        #expect(after[(2 << 20)..<(2 << 20) + 16] == Data("written-by-guest".utf8))
    }
}

/// The host action talks to the guest script both ways: the guest's lines to the host, the host's
/// lines (`GuestControl.send`) to the script's descriptor 3, in order, none lost.
@Suite(.enabled(if: GuestTestBed.enabled, "VHOST_USER_SKIP_GUEST_TESTS=1"))
struct GuestControlSelfTests {
    @Test func guestScriptReadsTheLinesTheHostSends() throws {
        let result = try GuestTestBed.run(
            daemons: [], modules: [],
            script: """
                for i in 1 2 3; do
                    echo "@@ready $i"
                    read -r reply <&3
                    echo "reply $i=$reply"
                done
                """,
            timeout: .seconds(60)
        ) { control in
            for i in 1...3 {
                try control.waitForLine("@@ready \(i)", timeout: .seconds(50))
                try control.send("from the host, line \(i)")
            }
        }
        #expect(result.status == 0, "\(result.output)")
        for i in 1...3 {
            #expect(result.values["reply \(i)"] == "from the host, line \(i)", "\(result.output)")
        }
    }
}

/// The parts of the bed that need no guest.
struct GuestTestBedUnitTests {
    @Test func outputIsTakenBetweenTheMarkersWithTheStatus() {
        let nonce = "n1"
        let raw = "noise\n" + Initramfs.beginMarker(nonce) + "\nline 1\nno newline" + "\n"
            + Initramfs.endMarker(nonce) + "3>>>\n"
        let parsed = Initramfs.parseOutput(raw, nonce: nonce)
        #expect(parsed?.output == "line 1\nno newline")
        #expect(parsed?.status == 3)
        #expect(Initramfs.parseOutput("noise\n" + Initramfs.beginMarker(nonce) + "\nline", nonce: nonce) == nil)
    }
}

/// The bed's other machines: the small kernel of scripts/prepare-guest-kernel (drivers built in) and
/// the QEMU of scripts/prepare-qemu (the generic vhost-user device), each with vhost-user-rng.
@Suite(.enabled(if: GuestTestBed.enabled, "VHOST_USER_SKIP_GUEST_TESTS=1"), .serialized)
struct GuestMachineSelfTests {
    static let rngScript = """
        set -e
        echo "rng_current=$(cat /sys/class/misc/hw_random/rng_current)"
        echo "bytes=$(head -c 65536 /dev/hwrng | wc -c)"
        echo "drivers=$(ls /sys/bus/virtio/drivers | tr '\\n' ' ')"
        for d in /sys/bus/virtio/devices/*; do echo "device=$(cat $d/device)"; done
        """

    @Test func customKernelServesTheGuestWithBuiltInDrivers() throws {
        let result = try GuestTestBed.run(
            daemons: [GuestDaemon(executable: "vhost-user-rng", qemuDevice: "vhost-user-rng-pci")],
            modules: [], script: Self.rngScript, timeout: .seconds(180), machine: .customKernel)
        #expect(result.status == 0, "guest output:\n\(result.output)")
        #expect(result.values["rng_current"]?.hasPrefix("virtio_rng") == true, "\(result.output)")
        #expect(result.values["bytes"] == "65536", "\(result.output)")
        // What Debian's kernel lacks: the virtio I2C and GPIO drivers, registered without a module.
        let drivers = Set((result.values["drivers"] ?? "").split(separator: " ").map(String.init))
        for driver in ["i2c_virtio", "gpio_virtio", "virtio_rng", "virtio_blk", "virtio_console"] {
            #expect(drivers.contains(driver), "driver \(driver) missing: \(drivers.sorted())")
        }
    }

    @Test func genericDeviceGivesTheGuestAnyVirtioDevice() throws {
        // virtio id 4 (entropy) through vhost-user-device-pci: Linux's virtio_rng binds to it as to
        // vhost-user-rng-pci, so the generic device carries a device QEMU need not know.
        let rng = GuestDaemon(
            executable: "vhost-user-rng", qemuDevice: "vhost-user-device-pci",
            qemuDeviceOptions: ",virtio-id=4,num_vqs=1")
        let result = try GuestTestBed.run(
            daemons: [rng], modules: ["virtio_rng"], script: Self.rngScript, timeout: .seconds(180),
            machine: .genericDevice)
        #expect(result.status == 0, "guest output:\n\(result.output)")
        #expect(result.values["device"] == "0x0004", "\(result.output)")
        #expect(result.values["rng_current"]?.hasPrefix("virtio_rng") == true, "\(result.output)")
        #expect(result.values["bytes"] == "65536", "\(result.output)")
    }
}

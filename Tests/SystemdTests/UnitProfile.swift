// What the systemd tests need to know about each daemon: its instance `vm1`'s options file and
// files, how QEMU attaches to its socket, and what the guest checks through it.
//
// The daemons come from the unit templates in systemd/ (`Installation.daemons`). One without a
// profile below is tested with `generic(_:)`: QEMU's `vhost-user-NAME-pci` attached with no guest
// driver (the guest sees the device), and an options file that silences the daemon's info lines.
// A new daemon's profile adds its guest driver's check, as rng and blk do.

import Foundation
import GuestBed
import SystemdBed
import Testing

struct UnitProfile: Sendable, CustomTestStringConvertible, CustomStringConvertible {
    /// The daemon's short name (`rng`), as in `vhost-user-rng@.service`.
    let daemon: String
    /// The contents of the instance's options file (`optionsFile`).
    let options: String
    /// A shell script run in the container before the units start: the files the instance serves.
    var setUp = ""
    var qemuDevice: String
    var qemuDeviceOptions = ""
    var modules: [String] = []
    /// The kernel and QEMU the guest boots: `.genericDevice` for a daemon QEMU attaches through its
    /// generic vhost-user-device-pci.
    var machine: GuestMachine = .standard
    /// Guest tools (Sources/GuestBed/GuestTools) the guest script runs.
    var tools: [String] = []
    /// The start of the service's STATUS= text while a guest is attached.
    var servingStatus = "serving a front-end"
    /// Whether the test stops the service while QEMU is attached. Not when no guest driver starts
    /// the device: QEMU 10.0 then aborts when its back-end goes away (an assertion in
    /// memory_region_del_eventfd), so the service is stopped once QEMU is gone.
    var stopsWhileAttached = true
    /// The guest's work with the device in guest run 1 (the first connection) or 2 (after the
    /// reconnection), printing `key=value` lines.
    let guestScript: @Sendable (_ run: Int) -> String
    /// Checks one run's values (`first` holds run 1's) with #expect; the container is still up.
    let checkGuest: @Sendable (_ run: Int, _ values: [String: String], _ first: [String: String], _ container: SystemdContainer) throws -> Void
    /// Checks with #expect what the options file changed, once the guests have run.
    let checkOptions: @Sendable (_ container: SystemdContainer, _ first: [String: String]) throws -> Void

    var description: String { "vhost-user-\(daemon)" }
    var testDescription: String { description }
    var service: String { "vhost-user-\(daemon)@vm1.service" }
    var socket: String { "vhost-user-\(daemon)@vm1.socket" }
    var optionsFile: String { "/etc/vhost-user/\(daemon)/vm1.conf" }
    var optionsVariable: String { "VHOST_USER_\(daemon.uppercased())_OPTIONS" }

    /// Every daemon with units in systemd/, with its profile.
    static let all: [UnitProfile] = Installation.daemons.map { known[$0] ?? generic($0) }

    static let known: [String: UnitProfile] = [rng, blk, i2c, rpmb, gpio, input, console, vsock].reduce(into: [:]) { $0[$1.daemon] = $1 }

    /// Boots a container with the project installed and the instance `vm1` set up: its options
    /// file written, `setUp` run, `serviceDropIn` (when given) added to the service as a drop-in,
    /// and `systemctl enable --now` of its socket done. The caller shuts the container down.
    func bootInstance(serviceDropIn: String? = nil) throws -> SystemdContainer {
        let container = try Installation.bootContainer()
        do {
            try container.write(options, to: optionsFile)
            if !setUp.isEmpty { try container.shell(setUp) }
            if let serviceDropIn {
                try container.write("[Service]\n\(serviceDropIn)", to: "/etc/systemd/system/\(service).d/test.conf")
                try container.check(["systemctl", "daemon-reload"])
            }
            try container.check(["systemctl", "enable", "--now", socket])
            return container
        } catch {
            container.shutdown()
            throw error
        }
    }

    // MARK: rng

    /// Rate-limited to 8 KiB per 500 ms, and debug logging: 32 KiB take the guest at least 1.5 s.
    static let rng = UnitProfile(
        daemon: "rng",
        options: "VHOST_USER_RNG_OPTIONS=\"--max-bytes 8192 --period-ms 500 --log-level debug\"\n",
        qemuDevice: "vhost-user-rng-pci", modules: ["virtio_rng"],
        guestScript: { _ in
            """
            set -e
            echo "rng_current=$(cat /sys/class/misc/hw_random/rng_current)"
            t0=$(cut -d' ' -f1 /proc/uptime)
            head -c 32768 /dev/hwrng > a
            t1=$(cut -d' ' -f1 /proc/uptime)
            echo "bytes=$(wc -c < a)"
            echo "distinct=$(head -c 4096 a | od -An -v -tu1 -w1 | sort -u | wc -l)"
            echo "seconds=$(awk "BEGIN { print $t1 - $t0 }")"
            """
        },
        checkGuest: { run, values, _, _ in
            #expect(values["rng_current"]?.hasPrefix("virtio_rng") == true, "run \(run): rng_current \(values["rng_current"] ?? "none")")
            #expect(values["bytes"] == "32768", "run \(run): the guest read \(values["bytes"] ?? "no") bytes from /dev/hwrng")
            // 4096 random bytes take all 256 values but for a few.
            #expect((Int(values["distinct"] ?? "") ?? 0) > 200, "run \(run): \(values["distinct"] ?? "no") distinct byte values")
        },
        checkOptions: { container, first in
            // --max-bytes 8192 --period-ms 500: 32 KiB need four periods' budgets.
            #expect((Double(first["seconds"] ?? "") ?? 0) >= 1.4,
                    "32 KiB from the rate-limited daemon took the guest \(first["seconds"] ?? "?") s")
            // --log-level debug: the queue's start is logged.
            try container.waitForJournal(of: "vhost-user-rng@vm1.service", containing: "queue 0 started",
                                         priority: "debug", timeout: .seconds(10))
        })

    // MARK: blk

    /// The image the options file names (group disk, which the unit's SupplementaryGroups= gives
    /// the dynamic user); io_uring, a serial and debug logging from the options.
    static let blk = UnitProfile(
        daemon: "blk",
        options: """
            VHOST_USER_BLK_FILE=/var/lib/vhost-user/blk/vm1.img
            VHOST_USER_BLK_OPTIONS="--num-queues 2 --serial vm1-disk0 --engine io_uring --log-level debug"

            """,
        setUp: """
            set -e
            mkdir -p /var/lib/vhost-user/blk
            truncate -s 64M /var/lib/vhost-user/blk/vm1.img
            chgrp disk /var/lib/vhost-user/blk/vm1.img
            chmod 0660 /var/lib/vhost-user/blk/vm1.img
            """,
        qemuDevice: "vhost-user-blk-pci", qemuDeviceOptions: ",num-queues=2", modules: ["virtio_blk"],
        guestScript: { run in
            // Run 1 writes 1 MiB of random data at 1 MiB and reads it back; run 2 reads it again.
            """
            set -e -o pipefail
            sha() { sha256sum | cut -d' ' -f1; }
            echo "serial=$(cat /sys/block/vda/serial)"
            echo "size=$(cat /sys/block/vda/size)"
            if [ \(run) = 1 ]; then
                head -c 1048576 /dev/urandom > p
                echo "pattern=$(sha < p)"
                dd if=p of=/dev/vda bs=64k seek=16 oflag=direct conv=notrunc 2>/dev/null
            fi
            echo "readback=$(dd if=/dev/vda bs=64k skip=16 count=16 iflag=direct 2>/dev/null | sha)"
            """
        },
        checkGuest: { run, values, first, container in
            #expect(values["size"] == "131072", "run \(run): the guest's disk has \(values["size"] ?? "no") sectors")
            #expect(first["pattern"] != nil && values["readback"] == first["pattern"],
                    "run \(run): the guest read back other data than it wrote in run 1")
            // The data is in the image the options file names.
            let image = try container.shell(
                "dd if=/var/lib/vhost-user/blk/vm1.img bs=64k skip=16 count=16 2>/dev/null | sha256sum | cut -d' ' -f1")
            #expect(image.trimmingCharacters(in: .whitespacesAndNewlines) == first["pattern"], "run \(run): the image holds other data")
        },
        checkOptions: { container, first in
            #expect(first["serial"] == "vm1-disk0", "the guest's disk serial: \(first["serial"] ?? "none")")
            // --engine io_uring under both system-call filters, and --log-level debug.
            try container.waitForJournal(of: "vhost-user-blk@vm1.service", containing: "queue 0: io_uring engine",
                                         priority: "debug", timeout: .seconds(10))
        })

    // MARK: rpmb

    /// An image made in the state directory before the units start, attached through QEMU's generic
    /// vhost-user-device-pci of the rebuilt QEMU (no guest driver exists): the guest sees a virtio
    /// device with id 28 whose config (read by rpmbprobe) is the image's capacity and the options
    /// file's block limits.
    static let rpmb = UnitProfile(
        daemon: "rpmb",
        options: "VHOST_USER_RPMB_OPTIONS=\"--max-write-blocks 8 --max-read-blocks 16 --log-level debug\"\n",
        setUp: """
            set -e
            mkdir -p /var/lib/vhost-user/rpmb
            /usr/libexec/vhost-user-rpmb --create --image /var/lib/vhost-user/rpmb/vm1.img --capacity 256K
            """,
        qemuDevice: "vhost-user-device-pci", qemuDeviceOptions: ",virtio-id=28,num_vqs=1,config_size=3",
        machine: .genericDevice, tools: ["rpmbprobe"],
        servingStatus: "front-end connected",
        stopsWhileAttached: false,
        guestScript: { _ in
            """
            set -e
            echo "rpmb_devices=$(grep -l 0x001c /sys/bus/virtio/devices/*/device | wc -l)"
            rpmbprobe
            """
        },
        checkGuest: { run, values, _, _ in
            #expect(values["rpmb_devices"] == "1", "run \(run): the guest sees \(values["rpmb_devices"] ?? "no") virtio devices with id 28")
            // 256 KiB: 2 units of 128 KiB.
            #expect(values["capacity"] == "2", "run \(run): the guest reads capacity \(values["capacity"] ?? "none")")
        },
        checkOptions: { container, first in
            // --max-write-blocks 8 --max-read-blocks 16, in the config the guest reads.
            #expect(first["max_wr_cnt"] == "8", "the guest reads max_wr_cnt \(first["max_wr_cnt"] ?? "none")")
            #expect(first["max_rd_cnt"] == "16", "the guest reads max_rd_cnt \(first["max_rd_cnt"] ?? "none")")
            // The image in the state directory, opened by the dynamic user; --log-level debug.
            try container.waitForJournal(of: "vhost-user-rpmb@vm1.service", containing: "vm1.img: 256 KiB, key not programmed",
                                         priority: "info", timeout: .seconds(10))
            // No driver starts the queue: the guest's config reads are what it logs at debug level.
            try container.waitForJournal(of: "vhost-user-rpmb@vm1.service", containing: "config read: 3 bytes at 0",
                                         priority: "debug", timeout: .seconds(10))
        })

    // MARK: input

    /// A synthetic tablet named by the options file, with its control socket in the unit's runtime
    /// directory: the guest's virtio_input lists it with its absolute axes.
    static let input = UnitProfile(
        daemon: "input",
        options: "VHOST_USER_INPUT_OPTIONS=\"--kind tablet --name vm1-tablet --control-socket /run/vhost-user-input/vm1/control.sock\"\n",
        qemuDevice: "vhost-user-input-pci", modules: ["virtio_input", "evdev"],
        guestScript: { _ in
            """
            i=0; until grep -q 'Name="vm1-tablet"' /proc/bus/input/devices; do i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
            echo "name=$(sed -n 's/^N: Name="\\(vm1-tablet\\)"/\\1/p' /proc/bus/input/devices)"
            echo "abs=$(grep -A9 'Name="vm1-tablet"' /proc/bus/input/devices | sed -n 's/^B: ABS=//p')"
            """
        },
        checkGuest: { run, values, _, container in
            #expect(values["abs"] == "3", "run \(run): the tablet's absolute axes: \(values["abs"] ?? "none")")
            guard run == 1 else { return }
            // The service still runs: its control socket, in the unit's runtime directory.
            let kind = try container.shell("stat -c %F /run/vhost-user-input/vm1/control.sock")
            #expect(kind.trimmingCharacters(in: .whitespacesAndNewlines) == "socket", "control socket: \(kind)")
        },
        checkOptions: { _, first in
            #expect(first["name"] == "vm1-tablet", "the guest's input devices lack the tablet the options file names")
        })

    // MARK: console

    /// The unit's console socket, plus a named port logged to a file under the unit's LogsDirectory.
    static let console = UnitProfile(
        daemon: "console",
        options: "VHOST_USER_CONSOLE_OPTIONS=\"--port name=data,backend=file:/var/log/vhost-user-console/vm1/data.log\"\n",
        qemuDevice: "vhost-user-device-pci", qemuDeviceOptions: ",virtio-id=3,num_vqs=6,config_size=12",
        machine: .genericDevice,
        guestScript: { run in
            """
            set -e
            for d in /sys/class/virtio-ports/*; do
                if [ "$(cat $d/name 2>/dev/null)" = data ]; then
                    echo "port=data"
                    echo "guest run \(run)" > /dev/$(basename $d)
                fi
            done
            """
        },
        checkGuest: { run, values, _, container in
            #expect(values["port"] == "data", "run \(run): the guest has no port named data")
            let log = try container.shell("cat /var/log/vhost-user-console/vm1/data.log")
            #expect(log.contains("guest run \(run)"), "run \(run): data.log holds \(log)")
        },
        checkOptions: { container, _ in
            let log = try container.shell("cat /var/log/vhost-user-console/vm1/data.log")
            #expect(log == "guest run 1\nguest run 2\n", "data.log holds \(log)")
        })

    // MARK: any other daemon

    static func generic(_ daemon: String) -> UnitProfile {
        UnitProfile(
            daemon: daemon,
            options: "VHOST_USER_\(daemon.uppercased())_OPTIONS=\"--log-level warning\"\n",
            qemuDevice: "vhost-user-\(daemon)-pci",
            servingStatus: "front-end connected",
            stopsWhileAttached: false,
            guestScript: { _ in "echo \"virtio_devices=$(ls /sys/bus/virtio/devices | wc -l)\"" },
            checkGuest: { run, values, _, _ in
                #expect(values["virtio_devices"] == "1", "run \(run): the guest sees \(values["virtio_devices"] ?? "no") virtio devices")
            },
            checkOptions: { container, _ in
                // --log-level warning: none of the daemon's info lines ("listening on ...").
                let journal = container.journal(of: "vhost-user-\(daemon)@vm1.service")
                let lines = journal.split(separator: "\n").filter { $0.hasPrefix("vhost-user-\(daemon): ") }
                #expect(lines.isEmpty, "with --log-level warning the daemon still logged:\n\(lines.joined(separator: "\n"))")
            })
    }
}

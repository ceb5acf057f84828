// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "vhost-user-devices",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "VhostUserKit", targets: ["VhostUserKit"]),
        .library(name: "VhostUserTesting", targets: ["VhostUserTesting"]),
        // Device libraries, for the fuzz package (Fuzz/), which builds them with the fuzzer's instrumentation.
        .library(name: "BlockDevice", targets: ["BlockDevice"]),
        .library(name: "I2CDevice", targets: ["I2CDevice"]),
        .library(name: "RPMBDevice", targets: ["RPMBDevice"]),
        .library(name: "GPIODevice", targets: ["GPIODevice"]),
        .library(name: "InputDevice", targets: ["InputDevice"]),
        .library(name: "ConsoleDevice", targets: ["ConsoleDevice"]),
        .library(name: "VsockDevice", targets: ["VsockDevice"]),
        .library(name: "SoundDevice", targets: ["SoundDevice"]),
        .executable(name: "vhost-user-rng", targets: ["vhost-user-rng"]),
        .executable(name: "vhost-user-blk", targets: ["vhost-user-blk"]),
        .executable(name: "vhost-user-i2c", targets: ["vhost-user-i2c"]),
        .executable(name: "vhost-user-rpmb", targets: ["vhost-user-rpmb"]),
        .executable(name: "vhost-user-rpmb-bench", targets: ["vhost-user-rpmb-bench"]),
        .executable(name: "vhost-user-gpio", targets: ["vhost-user-gpio"]),
        .executable(name: "vhost-user-input", targets: ["vhost-user-input"]),
        .executable(name: "vhost-user-console", targets: ["vhost-user-console"]),
        .executable(name: "vhost-user-vsock", targets: ["vhost-user-vsock"]),
        .executable(name: "vhost-user-snd", targets: ["vhost-user-snd"]),
        .executable(name: "vhost-user-bench", targets: ["vhost-user-bench"]),
        .executable(name: "vhost-user-blk-bench", targets: ["vhost-user-blk-bench"]),
        .executable(name: "vhost-user-input-bench", targets: ["vhost-user-input-bench"]),
        .executable(name: "vhost-user-snd-bench", targets: ["vhost-user-snd-bench"]),
        .executable(name: "vhost-user-demo", targets: ["vhost-user-demo"]),
        .executable(name: "vhost-user-soak", targets: ["vhost-user-soak"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        // HMAC-SHA256 for vhost-user-rpmb's authenticated frames.
        .package(url: "https://github.com/apple/swift-crypto", "3.12.0"..<"4.0.0"),
    ],
    targets: [
        // C shim: what Swift cannot express (cmsg macros, memfd, packed epoll_event, atomics on shared memory).
        .target(name: "CVhostUser"),
        // libsystemd (sd_listen_fds, sd_notify) through pkg-config.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // libseccomp: the system-call allow-list every daemon installs on itself (see VhostUserCLI/Sandbox).
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        // libblkio (from Debian trixie, see scripts/install-deps): an independent vhost-user-blk client.
        .systemLibrary(name: "CBlkio", pkgConfig: "blkio", providers: [.apt(["libblkio-dev"])]),

        // The vhost-user protocol, guest memory, virtqueues and the daemon runtime.
        .target(
            name: "VhostUserKit",
            dependencies: ["CVhostUser", .product(name: "Logging", package: "swift-log")]
        ),
        // Options and start-up shared by every daemon executable.
        .target(
            name: "VhostUserCLI",
            dependencies: [
                "VhostUserKit",
                "CSystemd",
                "CSeccomp",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A frontend that speaks the VMM side of the protocol: the per-device test harness.
        .target(name: "VhostUserTesting", dependencies: ["VhostUserKit", "CVhostUser"]),

        // Devices: logic in a library per device, a thin executable per daemon.
        .target(name: "RNGDevice", dependencies: ["VhostUserKit", "CVhostUser"]),
        // io_uring through liburing (its header cannot be imported next to Glibc).
        .target(name: "CURing", linkerSettings: [.linkedLibrary("uring")]),
        // Network storage for vhost-user-blk: Ceph RBD images through librbd (Debian ships no .pc for
        // it: the module map links librbd and librados) and NBD exports through libnbd.
        .systemLibrary(name: "CRBD", providers: [.apt(["librbd-dev"])]),
        .systemLibrary(name: "CNBD", pkgConfig: "libnbd", providers: [.apt(["libnbd-dev"])]),
        .target(
            name: "BlockDevice",
            dependencies: ["VhostUserKit", "CVhostUser", "CURing", "CRBD", "CNBD", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "vhost-user-blk",
            dependencies: ["BlockDevice", "VhostUserCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // virtio-rpmb: authenticated frames (HMAC-SHA256) over a crash-consistent image.
        .target(
            name: "RPMBDevice",
            dependencies: ["VhostUserKit", .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "vhost-user-rpmb",
            dependencies: ["RPMBDevice", "VhostUserCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The Linux GPIO character device (uAPI v2 ioctls) for vhost-user-gpio's passthrough chip.
        .target(name: "CGPIO"),
        .target(
            name: "GPIODevice",
            dependencies: ["VhostUserKit", "CVhostUser", "CGPIO", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "vhost-user-gpio",
            dependencies: ["GPIODevice", "VhostUserCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // evdev and uinput ioctls (request numbers are macros) and struct input_event.
        .target(name: "CInput"),
        .target(
            name: "InputDevice",
            dependencies: ["VhostUserKit", "CInput", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "vhost-user-input",
            dependencies: ["InputDevice", "VhostUserCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // virtio-console: named ports on host terminals, ptys, sockets and files.
        .target(name: "CConsole"),
        .target(name: "ConsoleDevice", dependencies: ["VhostUserKit", "CConsole", .product(name: "Logging", package: "swift-log")]),
        .executableTarget(
            name: "vhost-user-console",
            dependencies: ["ConsoleDevice", "VhostUserCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // virtio-vsock: guest sockets to host unix sockets and to other guests.
        .target(name: "VsockDevice", dependencies: ["VhostUserKit", .product(name: "Logging", package: "swift-log")]),
        .executableTarget(
            name: "vhost-user-vsock",
            dependencies: ["VsockDevice", "VhostUserCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // alsa-lib for vhost-user-snd's alsa backend.
        .systemLibrary(name: "CALSA", pkgConfig: "alsa", providers: [.apt(["libasound2-dev"])]),
        // virtio-snd: configurable PCM streams, jacks and controls, paced on the group's timers.
        // libpipewire for vhost-user-snd's pipewire backend (the SPA pod builder macros in a shim).
        .systemLibrary(name: "CPipeWire", pkgConfig: "libpipewire-0.3", providers: [.apt(["libpipewire-0.3-dev"])]),
        .target(name: "SoundDevice", dependencies: ["VhostUserKit", "CALSA", "CPipeWire", .product(name: "Logging", package: "swift-log")]),
        .executableTarget(
            name: "vhost-user-snd",
            dependencies: ["SoundDevice", "VhostUserCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "vhost-user-rng",
            dependencies: ["RNGDevice", "VhostUserCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        // vhost-user-i2c: the i2c-dev uAPI structs and ioctl numbers (Sources/CI2C), the device, the daemon.
        .target(name: "CI2C"),
        .target(
            name: "I2CDevice",
            dependencies: ["VhostUserKit", "CVhostUser", "CI2C", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "vhost-user-i2c",
            dependencies: ["I2CDevice", "VhostUserCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        // Benchmarks (not tests): throughput through the fake frontend.
        .executableTarget(
            name: "vhost-user-bench",
            dependencies: ["BenchmarkSupport", "VhostUserTesting", "VhostUserKit", "RNGDevice", "I2CDevice", "GPIODevice", "ConsoleDevice", "BlockDevice", "VsockDevice"],
            path: "Benchmarks/vhost-user-bench"
        ),
        // What the benchmark executables share: their options and clock.
        .target(name: "BenchmarkSupport", dependencies: ["VhostUserKit"], path: "Benchmarks/BenchmarkSupport"),
        // vhost-user-rpmb: authenticated writes and reads per second against raw pwrite/pread (+fsync).
        .executableTarget(
            name: "vhost-user-rpmb-bench",
            dependencies: ["BenchmarkSupport", "VhostUserTesting", "VhostUserKit", "RPMBDevice", .product(name: "Crypto", package: "swift-crypto")],
            path: "Benchmarks/vhost-user-rpmb-bench"
        ),
        // vhost-user-input: events per second from the control socket to the eventq, against a socket pair.
        .executableTarget(
            name: "vhost-user-input-bench",
            dependencies: ["BenchmarkSupport", "VhostUserTesting", "VhostUserKit", "InputDevice"],
            path: "Benchmarks/vhost-user-input-bench"
        ),
        // vhost-user-snd: 48 kHz stereo streams sustained without an underrun, and CPU per stream, against a plain timer loop.
        .executableTarget(
            name: "vhost-user-snd-bench",
            dependencies: ["BenchmarkSupport", "VhostUserTesting", "VhostUserKit", "SoundDevice"],
            path: "Benchmarks/vhost-user-snd-bench"
        ),
        // vhost-user-blk load generator and data verifier driven by libblkio (scripts/bench-blk).
        .executableTarget(
            name: "vhost-user-blk-bench",
            dependencies: ["CBlkio"],
            path: "Benchmarks/vhost-user-blk-bench"
        ),

        // scripts/soak: every daemon executable under random load and random front-end disconnects.
        .executableTarget(
            name: "vhost-user-soak",
            dependencies: ["VhostUserTesting", "VhostUserKit", "BlockDevice", "VsockDevice",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Crypto", package: "swift-crypto")],
            path: "Soak/vhost-user-soak"
        ),

        // Real Linux guests under an unmodified QEMU (TCG), attached to daemon processes: the bed
        // the guest tests and the demo boot guests with.
        .target(name: "GuestBed", dependencies: ["VhostUserTesting"], exclude: ["GuestTools"]),
        // A real systemd (PID 1 of a container booted from a minimal Debian root) with the project
        // installed by `make install`: the bed the systemd unit tests run the units in.
        .target(name: "SystemdBed", dependencies: ["GuestBed", "CVhostUser"]),
        // A throwaway Ceph cluster (scripts/throwaway-ceph) and NBD servers under a temporary directory:
        // the real engines the network-storage tests of vhost-user-blk run against.
        .target(name: "NetworkStorageBed", dependencies: ["GuestBed", "SystemdBed", "VhostUserKit"]),
        // scripts/demo: vhost-user-rng serving a guest's /dev/hwrng.
        .executableTarget(name: "vhost-user-demo", dependencies: ["GuestBed", "VhostUserKit"]),

        .testTarget(name: "VhostUserKitTests", dependencies: ["VhostUserKit", "VhostUserTesting", "CVhostUser"]),
        .testTarget(name: "BlockDeviceTests", dependencies: ["BlockDevice", "VhostUserKit", "VhostUserTesting", "NetworkStorageBed"]),
        .testTarget(name: "RPMBDeviceTests", dependencies: ["RPMBDevice", "VhostUserKit", "VhostUserTesting",
                                                           .product(name: "Crypto", package: "swift-crypto"),
                                                           .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "GPIODeviceTests", dependencies: ["GPIODevice", "VhostUserKit", "VhostUserTesting"]),
        .testTarget(name: "InputDeviceTests", dependencies: ["InputDevice", "CInput", "VhostUserKit", "VhostUserTesting"]),
        .testTarget(name: "RNGDeviceTests", dependencies: ["RNGDevice", "VhostUserKit", "VhostUserTesting"]),
        .testTarget(name: "I2CDeviceTests", dependencies: ["I2CDevice", "CI2C", "VhostUserKit", "VhostUserTesting"]),
        .testTarget(name: "VsockDeviceTests", dependencies: ["VsockDevice", "VhostUserKit", "VhostUserTesting"]),
        .testTarget(name: "ConsoleDeviceTests", dependencies: ["ConsoleDevice", "CConsole", "VhostUserKit", "VhostUserTesting"]),
        .testTarget(name: "SoundDeviceTests", dependencies: ["SoundDevice", "VhostUserKit", "VhostUserTesting"]),
        .testTarget(name: "DaemonTests", dependencies: ["VhostUserKit", "VhostUserTesting", "CConsole", "NetworkStorageBed", "VsockDevice", "SoundDevice",
                                                       .product(name: "Crypto", package: "swift-crypto")]),
        // Real Linux guests under an unmodified QEMU, attached to the daemon executables.
        .testTarget(name: "GuestTests", dependencies: ["GuestBed", "VhostUserKit", "NetworkStorageBed"]),
        // The installed units under a real systemd, serving a real guest.
        .testTarget(name: "SystemdTests", dependencies: ["SystemdBed", "GuestBed"]),
    ],
    swiftLanguageModes: [.v6]
)

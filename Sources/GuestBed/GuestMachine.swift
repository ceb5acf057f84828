// Which kernel boots the guest and which QEMU runs it.

import Foundation

/// The kernel and the QEMU of a guest run. Devices whose drivers Debian's kernel lacks (i2c, gpio)
/// boot the small kernel of scripts/prepare-guest-kernel; devices QEMU has no front-end for
/// (console, RPMB) attach through the generic `vhost-user-device-pci` of scripts/prepare-qemu.
public struct GuestMachine: Sendable, Equatable {
    public enum Kernel: Sendable, Equatable {
        /// Debian's 6.12 kernel and its modules (scripts/prepare-guest).
        case debian
        /// The small kernel with every virtio driver built in and no modules
        /// (scripts/prepare-guest-kernel).
        case custom
    }

    public enum Emulator: Sendable, Equatable {
        /// The installed qemu-system-x86_64.
        case installed
        /// The same QEMU version rebuilt with `vhost-user-device-pci` user-creatable
        /// (scripts/prepare-qemu).
        case genericDevice
    }

    public var kernel: Kernel
    public var emulator: Emulator

    public init(kernel: Kernel, emulator: Emulator) {
        self.kernel = kernel
        self.emulator = emulator
    }

    /// Debian's kernel and modules under the installed QEMU.
    public static let standard = GuestMachine(kernel: .debian, emulator: .installed)
    /// The small kernel (i2c, gpio and every other virtio driver built in) under the installed QEMU.
    public static let customKernel = GuestMachine(kernel: .custom, emulator: .installed)
    /// Debian's kernel under the QEMU whose `vhost-user-device-pci` takes any virtio id.
    public static let genericDevice = GuestMachine(kernel: .debian, emulator: .genericDevice)

    /// The kernel to boot and the modules files to load (with their dependencies, in order).
    func kernelAndModules(_ modules: [String]) throws -> (kernel: String, modules: [String]) {
        switch kernel {
        case .debian:
            let cache = try GuestCache.locate()
            return (cache.kernel, try cache.resolve(modules))
        case .custom:
            guard modules.isEmpty else {
                throw GuestTestBedError(
                    "the custom kernel has no modules (its drivers are built in): pass modules: [] instead of \(modules)")
            }
            return (try Self.customKernelPath(), [])
        }
    }

    /// The QEMU executable.
    func qemuPath() throws -> String {
        switch emulator {
        case .installed:
            return try findInPath(GuestTestBed.qemu)
        case .genericDevice:
            let path = "\(cacheDirectory("qemu", override: "VHOST_USER_QEMU_CACHE"))/current/\(GuestTestBed.qemu)"
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw GuestTestBedError(
                    "no QEMU with vhost-user-device-pci at \(path): run scripts/install-deps && scripts/prepare-qemu")
            }
            return path
        }
    }

    static func customKernelPath() throws -> String {
        let path = "\(cacheDirectory("guest-kernel", override: "VHOST_USER_GUEST_KERNEL_CACHE"))/current/vmlinux"
        guard FileManager.default.fileExists(atPath: path) else {
            throw GuestTestBedError(
                "no custom guest kernel at \(path): run scripts/install-deps && scripts/prepare-guest-kernel")
        }
        return path
    }
}

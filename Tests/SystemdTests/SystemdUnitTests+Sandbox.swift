// The sandbox in practice: the installed daemons load only the container's libraries, and a
// system call outside the daemon's allow-list kills the service (the daemons' test-only
// VHOST_USER_SANDBOX_PROBE hook, set by a test drop-in, makes one right after the sandbox is entered).

import Foundation
import SystemdBed
import Testing

extension SystemdUnitTests {
    @Test func installedDaemonsNeedOnlyTheContainersOwnLibraries() throws {
        let container = try Installation.bootContainer()
        defer { Self.expectCleanShutdown(container) }
        print("systemd in the container: \(try container.systemdVersion())")

        let installed = try container.check(["ls", "/usr/libexec"]).split(separator: "\n")
            .filter { $0.hasPrefix("vhost-user-") }.map { String($0.dropFirst("vhost-user-".count)) }.sorted()
        #expect(!Installation.daemons.isEmpty, "found no units in \(Installation.repository)/systemd")
        #expect(installed == Installation.daemons, "installed daemons \(installed), units for \(Installation.daemons)")
        for daemon in Installation.daemons {
            let binary = "/usr/libexec/vhost-user-\(daemon)"
            let libraries = try container.check(["ldd", binary])
            #expect(!libraries.contains("not found"), "\(binary):\n\(libraries)")
            #expect(!libraries.contains("swift") && !libraries.contains("Foundation"), "\(binary) loads Swift's libraries:\n\(libraries)")
            // It runs: the capabilities that QEMU's discovery file describes.
            let capabilities = try container.check([binary, "--print-capabilities"])
            #expect(capabilities.contains("\"type\""), "\(binary) --print-capabilities:\n\(capabilities)")
        }
        // The sockets' group exists on a bare root: the sysusers.d entry `make install` ships.
        #expect(try container.check(["getent", "group", "kvm"]).hasPrefix("kvm:"))
    }

    @Test(arguments: UnitProfile.all)
    func forbiddenSystemCallKillsTheService(_ profile: UnitProfile) throws {
        let container = try profile.bootInstance(serviceDropIn: "Environment=VHOST_USER_SANDBOX_PROBE=execve\nRestart=no\n")
        defer { Self.expectCleanShutdown(container) }

        // The daemon dies before it is ready, so the start job fails.
        let start = try container.run(["systemctl", "start", profile.service], timeout: .seconds(60))
        #expect(start.status != 0, "the service started although its daemon made a forbidden call:\n\(start.transcript)")
        let failed = try container.properties(of: profile.service, ["ActiveState", "Result", "ExecMainCode", "ExecMainStatus"])
        // Killed (CLD_KILLED, or CLD_DUMPED) by SIGSYS (31): the daemon's filter, not systemd's
        // (which would have returned EPERM).
        #expect(failed["ActiveState"] == "failed" && ["2", "3"].contains(failed["ExecMainCode"] ?? "") && failed["ExecMainStatus"] == "31",
                "\(failed)\n\(container.journal(of: profile.service))")
        #expect(container.journal(of: profile.service).contains("status=31/SYS"))
    }
}

// vhost-user-blk-bench: load generator and data verifier for any vhost-user-blk socket, driven by
// an independent frontend (libblkio's virtio-blk-vhost-user driver). scripts/bench-blk runs it
// against our daemon and qemu-storage-daemon side by side.
#if canImport(Glibc)
import Glibc
#endif

do {
    let args = try Arguments(CommandLine.arguments)
    switch args.mode {
    case "run": try runCommand(args)
    case "verify": try verifyCommand(args)
    case "probe": try probeCommand(args)
    case "help", "-h", "--help": print(usage)
    default: throw UsageError(description: "unknown mode \(args.mode)")
    }
} catch let error as UsageError {
    var text = "vhost-user-blk-bench: \(error)\n\(usage)\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(64)
} catch {
    fail("\(error)")
}

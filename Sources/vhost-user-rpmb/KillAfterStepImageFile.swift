import RPMBDevice
#if canImport(Glibc)
import Glibc
#endif

/// A test hook: with `VHOST_USER_RPMB_TEST_KILL_AFTER_STEP=N` in its environment, the daemon kills itself
/// with SIGKILL right after the Nth write or sync of its image since opening it (recovery's own
/// included), so a test can crash the real process between any two steps of an authenticated write
/// (Tests/RPMBDeviceTests/RPMBDaemonCrashTests). Without the variable the image file is used as is.
final class KillAfterStepImageFile: ImageFile {
    static let variable = "VHOST_USER_RPMB_TEST_KILL_AFTER_STEP"

    private let file: any ImageFile
    private let killAfter: Int
    private var steps = 0

    /// `file`, or `file` wrapped when the variable names a step.
    static func wrapping(_ file: any ImageFile) -> any ImageFile {
        guard let text = getenv(variable), let step = Int(String(cString: text)), step > 0 else { return file }
        return KillAfterStepImageFile(file, killAfter: step)
    }

    private init(_ file: any ImageFile, killAfter: Int) {
        self.file = file
        self.killAfter = killAfter
    }

    var size: Int { file.size }

    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(RPMBImageError) {
        try file.read(at: offset, into: buffer)
    }

    func write(at offset: Int, from buffer: UnsafeRawBufferPointer) throws(RPMBImageError) {
        try file.write(at: offset, from: buffer)
        stepDone()
    }

    func sync() throws(RPMBImageError) {
        try file.sync()
        stepDone()
    }

    private func stepDone() {
        steps += 1
        if steps == killAfter { raise(SIGKILL) }
    }
}

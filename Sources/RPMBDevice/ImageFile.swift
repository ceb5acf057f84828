#if canImport(Glibc)
import Glibc
#endif

/// An error from the backing image: what went wrong, with the path or the system call and its errno.
public struct RPMBImageError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The bytes an `RPMBImage` lives in. The image is written only through `write` and made durable only by
/// `sync`, so a test can record those steps and replay any prefix of them as a crash would leave the file.
public protocol ImageFile: AnyObject {
    /// The file's size in bytes.
    var size: Int { get }
    /// Reads exactly `buffer.count` bytes at `offset`.
    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(RPMBImageError)
    /// Writes all of `buffer` at `offset`.
    func write(at offset: Int, from buffer: UnsafeRawBufferPointer) throws(RPMBImageError)
    /// Makes every write so far durable (fdatasync); a no-op when durability was turned off.
    func sync() throws(RPMBImageError)
}

/// An image file on the host, read and written with pread/pwrite; `sync` is fdatasync unless `durable`
/// is false (then only a crash of the daemon, not of the host, is survived).
public final class PosixImageFile: ImageFile {
    public let fd: Int32
    public let size: Int
    public let durable: Bool
    public let path: String

    /// Opens an existing image for reading and writing.
    public init(path: String, durable: Bool = true) throws(RPMBImageError) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw RPMBImageError("cannot open the image \(path): \(String(cString: strerror(errno)))") }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw RPMBImageError("the image \(path) is not a regular file")
        }
        self.fd = fd
        self.size = Int(st.st_size)
        self.durable = durable
        self.path = path
    }

    deinit { close(fd) }

    public func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(RPMBImageError) {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw failure("pread", n) }
            done += n
        }
    }

    public func write(at offset: Int, from buffer: UnsafeRawBufferPointer) throws(RPMBImageError) {
        var done = 0
        while done < buffer.count {
            let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw failure("pwrite", n) }
            done += n
        }
    }

    public func sync() throws(RPMBImageError) {
        guard durable else { return }
        while fdatasync(fd) != 0 {
            if errno != EINTR { throw failure("fdatasync", -1) }
        }
    }

    private func failure(_ call: String, _ result: Int) -> RPMBImageError {
        RPMBImageError("\(call) on the image \(path): \(result == 0 ? "unexpected end of file" : String(cString: strerror(errno)))")
    }
}

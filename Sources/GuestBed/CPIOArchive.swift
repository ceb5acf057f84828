// The cpio "newc" writer the initramfs is built with.

import Foundation

/// A cpio archive in the "newc" format the kernel unpacks as initramfs.
struct CPIOArchive {
    private var data = Data()
    private var inode: UInt32 = 1

    mutating func directory(_ name: String) { entry(name, mode: 0o040755, contents: Data()) }
    mutating func file(_ name: String, contents: Data, mode: UInt32) { entry(name, mode: 0o100000 | mode, contents: contents) }
    mutating func symlink(_ name: String, target: String) { entry(name, mode: 0o120777, contents: Data(target.utf8)) }
    mutating func characterDevice(_ name: String, major: UInt32, minor: UInt32) {
        entry(name, mode: 0o020600, contents: Data(), rdev: (major, minor))
    }

    mutating func finish() -> Data {
        entry("TRAILER!!!", mode: 0, contents: Data(), isTrailer: true)
        return data
    }

    private mutating func entry(
        _ name: String, mode: UInt32, contents: Data, rdev: (UInt32, UInt32) = (0, 0), isTrailer: Bool = false
    ) {
        let nameBytes = Data(name.utf8) + [0]
        let fields: [UInt32] = [
            isTrailer ? 0 : inode, mode, 0, 0, 1, 0, UInt32(contents.count),
            0, 0, rdev.0, rdev.1, UInt32(nameBytes.count), 0,
        ]
        inode += 1
        data.append(contentsOf: "070701".utf8)
        for field in fields { data.append(contentsOf: String(format: "%08X", field).utf8) }
        data.append(nameBytes)
        pad()
        data.append(contents)
        pad()
    }

    private mutating func pad() {
        while data.count % 4 != 0 { data.append(0) }
    }
}

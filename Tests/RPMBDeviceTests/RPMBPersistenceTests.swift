import Testing
import VhostUserKit
import VhostUserTesting
@testable import RPMBDevice
#if canImport(Glibc)
import Glibc
#endif

/// A temporary directory for image files, removed with its files when the value goes away.
final class ImageDirectory {
    let path: String
    init() {
        var template = Array("/tmp/rpmb-XXXXXX".utf8CString)
        path = String(cString: mkdtemp(&template)!)
    }
    deinit {
        if let dir = opendir(path) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
                if name != "." && name != ".." { unlink("\(path)/\(name)") }
            }
            closedir(dir)
        }
        rmdir(path)
    }
}

/// Runs `argv` (argv[0] a full path), its stdout into a file; returns the exit code and what it printed.
func run(_ argv: [String]) throws -> (status: Int32, output: String) {
    let out = ImageDirectory()
    let outPath = "\(out.path)/out"
    let pid = try spawnInOwnGroup(argv) { actions in
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, outPath, O_WRONLY | O_APPEND, 0o600)
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    var text = ""
    if let f = fopen(outPath, "r") {
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, 4096, f) != nil { text += String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        fclose(f)
    }
    return (exitCode(fromWaitStatus: status), text)
}

@Suite("vhost-user-rpmb: persistence and independent MACs")
struct RPMBPersistenceTests {
    @Test("key, counter and data survive closing the image and opening it again")
    func stateSurvivesRestart() throws {
        let dir = ImageDirectory()
        let path = "\(dir.path)/rpmb.img"
        try RPMBImage.create(path: path, capacityUnits: 2)
        do {
            let d = try RPMBDriver(device: try RPMBDevice(image: try RPMBImage(file: try PosixImageFile(path: path)), logger: quietLogger))
            #expect(d.programKey().result == ResultCode.ok)
            #expect(d.write(address: 1000, blocks: [RPMBDriver.block(4), RPMBDriver.block(5)], counter: 0).result == ResultCode.ok)
            #expect(d.write(address: 5, blocks: [RPMBDriver.block(6)], counter: 1).result == ResultCode.ok)
        }
        let d = try RPMBDriver(device: try RPMBDevice(image: try RPMBImage(file: try PosixImageFile(path: path)), logger: quietLogger))
        let (counter, _) = d.counter()
        #expect(counter.result == ResultCode.ok)
        #expect(counter.counter == 2)
        #expect(d.macIsValid([counter]))
        #expect(d.programKey((0..<32).map { _ in 1 }).result == ResultCode.writeFailure)
        #expect(d.read(address: 1000, count: 2).frames.map(\.data) == [RPMBDriver.block(4), RPMBDriver.block(5)])
        #expect(d.read(address: 5, count: 1).frames[0].data == RPMBDriver.block(6))
        // A replay of the first write is refused after the restart too.
        #expect(d.write(address: 1000, blocks: [RPMBDriver.block(9)], counter: 0).result == ResultCode.counter)
    }

    @Test("create refuses to replace an existing file and bad capacities")
    func createRefuses() throws {
        let dir = ImageDirectory()
        let path = "\(dir.path)/rpmb.img"
        try RPMBImage.create(path: path, capacityUnits: 1)
        #expect(throws: RPMBImageError.self) { try RPMBImage.create(path: path, capacityUnits: 1) }
        #expect(throws: RPMBImageError.self) { try RPMBImage.create(path: "\(dir.path)/b", capacityUnits: 0) }
        #expect(throws: RPMBImageError.self) { try RPMBImage.create(path: "\(dir.path)/c", capacityUnits: 129) }
        #expect(try RPMBImage(file: try PosixImageFile(path: path)).capacityUnits == 1)
    }

    @Test("the MACs of requests and of the device's responses match Python's hmac module on the same frames")
    func macsMatchPython() throws {
        let d = try RPMBDriver(image: try MemoryImageFile.formatted(), limits: .init(maxWriteBlocks: 3, maxReadBlocks: 3))
        _ = d.programKey()
        let write = d.writeFrames(address: 20, blocks: (1...3).map(RPMBDriver.block), counter: 0)
        let result = d.exchange(write + [Frame(type: RequestType.resultRead)], responseBytes: 512).frames[0]
        let read = d.read(address: 20, count: 3).frames
        let counter = d.counter().response
        let cases: [(String, [Frame])] = [("write request", write), ("write result", [result]), ("read response", read),
                                          ("counter response", [counter])]
        let dir = ImageDirectory()
        var argv = ["/usr/bin/env", "python3", "-c", """
            import hashlib, hmac, sys
            key = bytes.fromhex(sys.argv[1])
            for path in sys.argv[2:]:
                data = open(path, 'rb').read()
                frames = [data[i:i + 512] for i in range(0, len(data), 512)]
                print(hmac.new(key, b''.join(f[228:512] for f in frames), hashlib.sha256).hexdigest())
            """, d.key.map { hex($0) }.joined()]
        for (i, (_, frames)) in cases.enumerated() {
            let path = "\(dir.path)/frames\(i)"
            let bytes = frames.flatMap(\.bytes)
            let f = fopen(path, "wb")!
            fwrite(bytes, 1, bytes.count, f)
            fclose(f)
            argv.append(path)
        }
        let (status, output) = try run(argv)
        #expect(status == 0, "python3 failed: \(output)")
        let pythonMACs = output.split(separator: "\n").map(String.init)
        #expect(pythonMACs.count == cases.count)
        for ((name, frames), python) in zip(cases, pythonMACs) {
            #expect(frames.last!.mac.map { hex($0) }.joined() == python, "\(name)")
        }
    }
}

func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
}

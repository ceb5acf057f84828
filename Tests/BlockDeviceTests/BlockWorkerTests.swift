import BlockDevice
import Testing
import VhostUserKit
import VhostUserTesting

@Suite("virtio-blk queues sharing workers (--workers)")
struct BlockWorkerTests {
    @Test("four queues on fewer workers: queue i runs on worker i % N, and every queue serves", arguments: [1, 2], [IOEngineKind.ioUring, .threads, .inline])
    func queuesShareWorkers(workers: Int, engine: IOEngineKind) throws {
        let bench = try BlockTestBench(engine: engine, queues: 4, workers: workers)
        #expect(bench.device.queueGroups == (workers == 1 ? [[0, 1, 2, 3]] : [[0, 2], [1, 3]]))
        for q in 0..<4 {
            #expect(try bench.write(sector: UInt64(q), pattern(512, seed: UInt8(q + 1)), on: q) == BlockRequestTests.ok)
        }
        let expected = (0..<4).flatMap { pattern(512, seed: UInt8($0 + 1)) }
        for q in 0..<4 {
            let (status, data, _) = try bench.read(sector: 0, length: 2048, on: q)
            #expect(status == BlockRequestTests.ok && data == expected, "queue \(q)")
        }
        #expect(bench.fileBytes(at: 0, count: 2048) == expected)
    }

    @Test("a worker count outside 1...queues is refused", arguments: [0, 5])
    func badWorkerCount(workers: Int) throws {
        var options = BlockDevice.Options()
        options.queueCount = 4
        options.workers = workers
        #expect(throws: BlockBackendError.self) { try BlockDevice(backend: BlockBackend(target: .null(size: 1 << 20)), options: options) }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// The glue every fuzz target shares: its `LLVMFuzzerInitialize` writes the target's seed corpus and
/// exits when FUZZ_WRITE_SEEDS names a directory (scripts/fuzz --write-seeds), and its
/// `LLVMFuzzerTestOneInput` hands the input to the target's body as a buffer.
public enum FuzzTarget {
    /// Writes `seeds` (name, bytes) into $FUZZ_WRITE_SEEDS and exits, when that variable is set.
    public static func writeSeedsIfAsked(_ seeds: () throws -> [(String, [UInt8])]) {
        guard let directory = getenv("FUZZ_WRITE_SEEDS").map({ String(cString: $0) }) else { return }
        do {
            for (name, bytes) in try seeds() {
                let path = directory + "/" + name
                guard let file = fopen(path, "wb") else { fatalError("cannot create \(path)") }
                _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
                fclose(file)
            }
        } catch {
            fatalError("cannot make the seeds: \(error)")
        }
        exit(0)
    }

    /// The input as a buffer (libFuzzer passes a null pointer for an empty input).
    public static func input(_ start: UnsafeRawPointer?, _ count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: count > 0 ? start : nil, count: count)
    }
}

#if canImport(Glibc)
import Glibc
#endif
/// Checks every `interval` inputs that the process holds no more descriptors and threads than after
/// its first input: a leak of either, however slow, ends the run with the input that showed it.
public struct ResourceWatch {
    private let interval: Int
    private var runs = 0
    private var baseline: ProcessResources?

    public init(every interval: Int) { self.interval = interval }

    public mutating func check() {
        runs += 1
        guard runs % interval == 0 || baseline == nil else { return }
        var now = ProcessResources.now()
        guard let baseline else { self.baseline = now; return }
        // A joined thread can still be listed in /proc/self/task for a moment while the kernel
        // finishes its exit: look again for up to 100 ms before calling a thread count a leak.
        for _ in 0..<100 where now.threads > baseline.threads && now.descriptors <= baseline.descriptors {
            usleep(1000)
            now = ProcessResources.now()
        }
        ProcessResources.expectNoLeak(before: baseline, after: now)
    }
}

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
        let now = ProcessResources.now()
        guard let baseline else { self.baseline = now; return }
        ProcessResources.expectNoLeak(before: baseline, after: now)
    }
}

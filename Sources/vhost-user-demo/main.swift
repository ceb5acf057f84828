// vhost-user-demo (scripts/demo): each device's daemon serving a small Linux guest under QEMU (TCG),
// the guest's driver using it, and what reached the host checked. One scene per device
// (DemoScene.all); `vhost-user-demo NAME [daemon options...]` runs one scene with extra options for
// its daemon.

import Foundation
import GuestBed

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("-h") || arguments.contains("--help") {
    print("usage: vhost-user-demo [SCENE [daemon options...]]")
    print("Boots a Linux guest under QEMU for each device, served by its vhost-user daemon, and shows the")
    print("guest using it. Without arguments every scene runs; with one, only that scene, its daemon getting")
    print("the options that follow. Needs scripts/install-deps and the guest preparation (scripts/demo runs them).")
    print("Scenes:")
    for scene in DemoScene.all { print("  \(scene.name.padding(toLength: 8, withPad: " ", startingAt: 0)) \(scene.summary)") }
    exit(0)
}

var selected: [(DemoScene, [String])] = DemoScene.all.map { ($0, []) }
if let first = arguments.first {
    guard let scene = DemoScene.all.first(where: { $0.name == first }) else {
        print("demo: no scene \(first); scenes: \(DemoScene.all.map(\.name).joined(separator: ", "))")
        exit(2)
    }
    selected = [(scene, Array(arguments.dropFirst()))]
}

print("demo: daemons from \(GuestTestBed.binaryDirectory)")
let clock = ContinuousClock()
var outcomes: [(name: String, line: String, ok: Bool)] = []
for (scene, sceneArguments) in selected {
    print("\n=== \(scene.name): \(scene.summary) ===")
    let start = clock.now
    do {
        let summary = try scene.run(sceneArguments)
        let elapsed = (clock.now - start).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        outcomes.append((scene.name, "\(summary) (\(String(format: "%.1f", seconds)) s)", true))
    } catch {
        outcomes.append((scene.name, "FAILED — \(error)", false))
    }
}
print()
for outcome in outcomes { print("demo: \(outcome.name): \(outcome.ok ? "OK — " : "")\(outcome.line)") }
exit(outcomes.allSatisfy(\.ok) ? 0 : 1)

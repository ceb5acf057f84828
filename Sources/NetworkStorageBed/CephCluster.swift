// A throwaway single-node Ceph cluster for the network-storage tests of vhost-user-blk.

import Foundation
import Glibc
import GuestBed
import SystemdBed

/// Why the network-storage tests cannot run here (a package missing): they report SKIPPED with it.
public struct NetworkStorageUnavailable: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A command of the bed failed.
public struct NetworkStorageError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One monitor and one OSD on 127.0.0.1 under a temporary directory, started by
/// scripts/throwaway-ceph, with pool `rbd`; stopped by `stop()` or when released. The OSD keeps its
/// objects in memory (about 2 s to start) or, `durable`, in a BlueStore file (about 7 s), which lets a
/// fault test stop and restart it. Every client gets `configFile` (`-c`, or vhost-user-blk's `--ceph-conf`).
public final class CephCluster: @unchecked Sendable {
    public let directory: String
    public let configFile: String
    public let pool = "rbd"
    private let script: String
    private var stopped = false

    /// Whether the cluster's programs are installed; the reason when they are not.
    public static var unavailableReason: String? {
        for tool in ["ceph-mon", "ceph-osd", "ceph", "rbd", "monmaptool"] where (try? findInPath(tool)) == nil {
            return "\(tool) is not installed (scripts/install-deps installs ceph-mon, ceph-osd and ceph-common)"
        }
        return nil
    }

    public init(durable: Bool = false) throws {
        if let reason = Self.unavailableReason { throw NetworkStorageUnavailable(reason) }
        script = Self.repositoryRoot + "/scripts/throwaway-ceph"
        directory = try makeTemporaryDirectory("vhu-ceph")
        configFile = directory + "/ceph.conf"
        // WATCH_PID: the script stops the cluster itself should this process die without stop().
        setenv("WATCH_PID", "\(getpid())", 1)
        // The object store goes in the script's own environment: tests start clusters in parallel, and
        // a setenv here could hand one cluster's choice to another.
        let store = "CEPH_OBJECTSTORE=" + (durable ? "bluestore" : "memstore")
        let result = try HostCommand.run(["env", store, script, "start", directory, pool], timeout: .seconds(60))
        guard result.status == 0 else {
            _ = try? HostCommand.run([script, "stop", directory], timeout: .seconds(30))
            throw NetworkStorageError("the Ceph cluster did not start:\n\(result.transcript)\n\(tail(readText(directory + "/log/mon.a.log")))")
        }
    }

    deinit { stop() }

    /// Stops the daemons and removes the directory with what the OSD kept.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        _ = try? HostCommand.run([script, "stop", directory], timeout: .seconds(30))
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs `rbd -c CONF ARGS`; returns its output, throws on failure.
    @discardableResult
    public func rbd(_ arguments: [String], timeout: Duration = .seconds(60)) throws -> String {
        let result = try HostCommand.run(["rbd", "-c", configFile] + arguments, timeout: timeout)
        guard result.status == 0 else { throw NetworkStorageError(result.transcript) }
        return result.output
    }

    /// Creates image `name` in the pool, `megabytes` MiB; returns its `pool/name` spec.
    @discardableResult
    public func createImage(_ name: String, megabytes: Int) throws -> String {
        try rbd(["create", "--size", "\(megabytes)M", "\(pool)/\(name)"])
        return "\(pool)/\(name)"
    }

    /// The image's bytes, through `rbd export` (the engine's own tool).
    public func export(_ spec: String) throws -> [UInt8] {
        let file = directory + "/export-\(UInt32.random(in: 0...UInt32.max)).raw"
        defer { unlink(file) }
        try rbd(["export", "--no-progress", spec, file])
        guard let data = FileManager.default.contents(atPath: file) else { throw NetworkStorageError("rbd export wrote no \(file)") }
        return [UInt8](data)
    }

    /// Stops the OSD (SIGTERM): the cluster stops answering, as with a lost OSD; operations wait for
    /// it or time out. Needs a `durable` cluster to come back with its data.
    public func stopOSD() throws { try script("stop-osd") }

    /// Starts the OSD again; returns once the monitor has it up: operations waiting for it complete.
    public func startOSD() throws { try script("start-osd") }

    private func script(_ command: String) throws {
        let result = try HostCommand.run([script, command, directory], timeout: .seconds(30))
        guard result.status == 0 else { throw NetworkStorageError(result.transcript) }
    }

    /// The repository (the scripts), from this source file's path.
    static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }
}

/// A new directory under /tmp named PREFIX.XXXXXX.
func makeTemporaryDirectory(_ prefix: String) throws -> String {
    var template = Array("/tmp/\(prefix).XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw NetworkStorageError("mkdtemp: errno \(errno)") }
    return String(cString: made)
}

extension CephCluster {
    /// One cluster for the whole test process, started on first use (about 2 s) and stopped at exit;
    /// each test makes images of its own in it.
    public static func shared() throws -> CephCluster { try sharedCluster.get() }
}

private let sharedCluster: Result<CephCluster, any Error> = {
    let result = Result { try CephCluster() }
    atexit { (try? sharedCluster.get())?.stop() }
    return result
}()

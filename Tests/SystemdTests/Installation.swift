// The repository under test, installed into containers the way a user installs it.

import Foundation
import SystemdBed

enum Installation {
    /// The package's root directory (this file is Tests/SystemdTests/Installation.swift).
    static let repository: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The daemons whose units the repository ships (`systemd/vhost-user-NAME@.service`); the
    /// tests run for each, so a new daemon's units are tested as soon as they are added.
    static let daemons: [String] = (try? ProjectInstallation.daemons(in: repository)) ?? []

    /// Boots a container of the cached root with the project installed by
    /// `make install DESTDIR=ROOT PREFIX=/usr`.
    static func bootContainer() throws -> SystemdContainer {
        try SystemdContainer.boot { root in try ProjectInstallation.makeInstall(repository: repository, into: root) }
    }
}

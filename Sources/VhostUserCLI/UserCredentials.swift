import VhostUserKit
#if canImport(Glibc)
import Glibc
#endif

/// The user and group `--user` and `--group` name, resolved at the very start (so that a wrong name
/// fails before anything is created) and assumed once the daemon is set up.
struct UserCredentials: Sendable, Equatable {
    let uid: uid_t
    let gid: gid_t

    /// `user` is a name or a numeric uid; `group` a name or a numeric gid, by default the user's
    /// primary group. The process must be root, and the target must not be.
    static func resolve(user: String, group: String?) throws(StartupError) -> UserCredentials {
        guard geteuid() == 0 else {
            throw StartupError("--user \(user): only root can change user, and the daemon runs as uid \(geteuid()); start it as root or without --user")
        }
        guard let uid = account({ getpwnam_r(user, $0, $1, $2, $3) })?.uid ?? UInt32(user) else {
            throw StartupError("--user \(user): no such user")
        }
        guard uid != 0 else { throw StartupError("--user \(user): that is root; name an unprivileged user") }
        let gid: gid_t
        if let group {
            guard let found = lookUpGroup(group) ?? UInt32(group) else { throw StartupError("--group \(group): no such group") }
            gid = found
        } else {
            guard let primary = account({ getpwuid_r(uid, $0, $1, $2, $3) })?.gid else {
                throw StartupError("--user \(user): not in the user database, so it has no primary group; give --group")
            }
            gid = primary
        }
        guard gid != 0 else { throw StartupError("--group \(group ?? user): that is root's group; name an unprivileged group") }
        return UserCredentials(uid: uid, gid: gid)
    }

    /// Becomes this user and group for good: no supplementary groups, then the group, then the user
    /// (after which changing the group is no longer allowed). Every thread follows (glibc applies
    /// set*id calls process-wide). Throws unless the process can no longer become root again.
    func assume() throws(StartupError) {
        guard setgroups(0, nil) == 0 else { throw failure("setgroups") }
        guard setgid(gid) == 0 else { throw failure("setgid \(gid)") }
        guard setuid(uid) == 0 else { throw failure("setuid \(uid)") }
        // As root, setuid and setgid set the real, effective and saved ids alike. Check the first
        // two, and that no way back to root is left: that would need a saved id of 0 or a capability.
        guard getuid() == uid, geteuid() == uid, getgid() == gid, getegid() == gid, getgroups(0, nil) == 0 else {
            throw StartupError("--user: the ids did not all change (uid \(getuid())/\(geteuid()), gid \(getgid())/\(getegid()))")
        }
        guard setuid(0) != 0, seteuid(0) != 0, setgid(0) != 0, setegid(0) != 0 else {
            throw StartupError("--user: the daemon could become root again after dropping to uid \(uid)")
        }
    }

    private func failure(_ call: String) -> StartupError {
        StartupError("--user: \(SystemError(call, errno: errno))")
    }

    /// uid and primary gid of a user-database entry (NSS) that `find` (getpwnam_r or getpwuid_r) looks up.
    private static func account(_ find: (UnsafeMutablePointer<passwd>, UnsafeMutablePointer<CChar>, Int,
                                         UnsafeMutablePointer<UnsafeMutablePointer<passwd>?>) -> Int32) -> (uid: uid_t, gid: gid_t)? {
        var entry = passwd(), result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard find(&entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return (entry.pw_uid, entry.pw_gid)
    }

    /// The gid of the group called `name`.
    private static func lookUpGroup(_ name: String) -> gid_t? {
        var entry = group(), result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.gr_gid
    }
}

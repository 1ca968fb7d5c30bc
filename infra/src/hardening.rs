//! What each service does to itself at start-up so that other programs of its user cannot
//! read its secrets.

/// Makes this process non-dumpable: `/proc/<pid>/environ` and `/proc/<pid>/mem` then belong
/// to root, so no other process of the same user (ffmpeg taking a cover from a crafted video,
/// say) can read the environment's secrets (`JWT_SECRET`, the stores' credentials) or the
/// memory, nor attach to it; and it leaves no core dump.
pub fn keep_secrets_from_other_processes() {
    if let Err(error) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(%error, "could not make the service non-dumpable");
    }
}

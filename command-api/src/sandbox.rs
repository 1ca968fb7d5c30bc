//! Where ffmpeg runs. It decodes bytes anyone may have crafted, so it is taken to be a program
//! that may be made to do anything its user may: it must not reach the service's secrets (its
//! environment and memory hold `JWT_SECRET` and the stores' credentials) nor the network.
//!
//! The service makes itself non-dumpable at start
//! ([`infra::hardening::keep_secrets_from_other_processes`]):
//! `/proc/<pid>/environ` and `/proc/<pid>/mem` then belong to root, and no process of the
//! same user (ffmpeg included) can read them or attach to it. Beyond that, from the strongest:
//! - run as root: ffmpeg runs as another user (`nobody`), in a network namespace of its own
//!   (`unshare --net`, then `setpriv`): root's secrets and every socket are out of its reach;
//! - run as another user, where the machine lets it make namespaces: in a user and network
//!   namespace of its own (`unshare --user --net`);
//! - else ffmpeg runs as the service's user, kept from its secrets only by its being
//!   non-dumpable (no network isolation).
//!
//! As root without `setpriv`, `unshare` or a `nobody` user, no sandbox can be made: a root
//! ffmpeg could read anything, so none runs, and every video gets the default cover.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// The user ffmpeg runs as when the service runs as root.
const SANDBOX_USER: &str = "nobody";

/// How ffmpeg is confined on this machine (see the module's documentation).
#[derive(Debug, Clone)]
pub enum Sandbox {
    /// Root: as `uid`/`gid`, with no network.
    OtherUser {
        unshare: PathBuf,
        setpriv: PathBuf,
        uid: u32,
        gid: u32,
    },
    /// Not root: in a user and network namespace of its own.
    Namespaces { unshare: PathBuf },
    /// Not root, and no namespace allowed: as the service's user, which is non-dumpable.
    NonDumpableParent,
}

impl Sandbox {
    /// The strongest confinement this machine allows, or why none can be made.
    pub async fn probe() -> Result<Self, String> {
        let unshare = util_linux("unshare");
        if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name(SANDBOX_USER)
                .ok()
                .flatten()
                .ok_or(format!("no user {SANDBOX_USER:?} to run ffmpeg as"))?;
            let setpriv = util_linux("setpriv").ok_or("no setpriv (util-linux)")?;
            let unshare = unshare.ok_or("no unshare (util-linux)")?;
            if !runs(Command::new(&unshare).args(["--net", "--", "true"])).await {
                return Err("unshare --net is refused here".to_owned());
            }
            return Ok(Self::OtherUser {
                unshare,
                setpriv,
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            });
        }
        match unshare {
            Some(unshare)
                if runs(Command::new(&unshare).args(["--user", "--net", "--", "true"])).await =>
            {
                Ok(Self::Namespaces { unshare })
            }
            _ => Ok(Self::NonDumpableParent),
        }
    }

    /// Whether ffmpeg is kept off the network.
    pub fn has_no_network(&self) -> bool {
        !matches!(self, Self::NonDumpableParent)
    }

    /// A command that runs `program` with `args` confined: the sandbox's programs `exec` one
    /// another, so `program` ends up the service's own child, and a kill reaches it.
    pub fn command(&self, program: &Path) -> Command {
        match self {
            Self::OtherUser {
                unshare,
                setpriv,
                uid,
                gid,
            } => {
                let mut command = Command::new(unshare);
                command
                    .args(["--net", "--"])
                    .arg(setpriv)
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .args(["--clear-groups", "--no-new-privs", "--"])
                    .arg(program);
                command
            }
            Self::Namespaces { unshare } => {
                let mut command = Command::new(unshare);
                command.args(["--user", "--net", "--"]).arg(program);
                command
            }
            Self::NonDumpableParent => Command::new(program),
        }
    }

    /// Hands `file` to the sandbox's user, for it to read or write: the service's own files
    /// are private to it.
    pub fn hand_over(&self, file: &Path) -> std::io::Result<()> {
        match self {
            Self::OtherUser { uid, gid, .. } => {
                std::os::unix::fs::chown(file, Some(*uid), Some(*gid))
            }
            _ => Ok(()),
        }
    }
}

/// Where util-linux installs `name` on Debian (the child's environment is empty, so nothing
/// could search a PATH), else on the service's PATH.
fn util_linux(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
        .or_else(|| crate::videos::on_path(std::ffi::OsStr::new(name)))
}

async fn runs(command: &mut Command) -> bool {
    command
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}

//! Where ffmpeg runs. It decodes bytes anyone may have crafted, so it is taken to be a program
//! that may be made to do anything its user may: it must not reach the service's secrets (its
//! environment and memory hold `JWT_SECRET` and the stores' credentials) nor the network.
//!
//! The service makes itself non-dumpable at start
//! ([`infra::hardening::keep_secrets_from_other_processes`]):
//! `/proc/<pid>/environ` and `/proc/<pid>/mem` then belong to root, and no process of the
//! same user (ffmpeg included) can read them or attach to it. Beyond that, from the strongest:
//! - run as root: ffmpeg runs as another user (`nobody`), in a network and PID namespace of
//!   its own (`unshare --net --pid`, then `setpriv`): root's secrets and every socket are out
//!   of its reach, and nothing it starts outlives it. It reads a copy of the upload the
//!   service made for it, and writes the cover to its standard output: it is handed no path
//!   the service later opens (a link there would make the service read what it points to);
//! - run as another user, where the machine lets it make namespaces: in a user, network and
//!   PID namespace of its own (`unshare --user --net --pid`);
//! - else ffmpeg runs as the service's user, kept from its secrets only by its being
//!   non-dumpable (no network isolation).
//!
//! As root without `setpriv`, `unshare` or a `nobody` user, no sandbox can be made: a root
//! ffmpeg could read anything, so none runs, and every video gets the default cover.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// Namespaces of ffmpeg's own, made by `unshare` as root: no network, and processes of its
/// own, all killed when it is (`--kill-child`: nothing it starts outlives a run).
const ROOT_NAMESPACES: [&str; 5] = ["--net", "--pid", "--fork", "--kill-child", "--"];
/// The same made by another user: in a user namespace of its own.
const USER_NAMESPACES: [&str; 6] = ["--user", "--net", "--pid", "--fork", "--kill-child", "--"];

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
            if !runs(Command::new(&unshare).args(ROOT_NAMESPACES).arg("true")).await {
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
                if runs(Command::new(&unshare).args(USER_NAMESPACES).arg("true")).await =>
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
                    .args(ROOT_NAMESPACES)
                    .arg(setpriv)
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .args(["--clear-groups", "--no-new-privs", "--"])
                    .arg(program);
                command
            }
            Self::Namespaces { unshare } => {
                let mut command = Command::new(unshare);
                command.args(USER_NAMESPACES).arg(program);
                command
            }
            Self::NonDumpableParent => Command::new(program),
        }
    }

    /// The upload as ffmpeg is to read it. Run as another user, ffmpeg gets a copy of its
    /// own in a folder of the service's that it may not change (the service goes on using
    /// its own file, which ffmpeg can neither read nor swap); otherwise the upload itself.
    pub fn input(&self, upload: &Path) -> std::io::Result<Input> {
        let Self::OtherUser { uid, gid, .. } = self else {
            return Ok(Input {
                path: upload.to_owned(),
                _folder: None,
            });
        };
        let folder = tempfile::Builder::new().prefix("ffmpeg-").tempdir()?;
        // Others may pass through to the copy, not list or change what is there.
        std::fs::set_permissions(folder.path(), std::fs::Permissions::from_mode(0o711))?;
        let path = folder.path().join("input");
        std::fs::copy(upload, &path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))?;
        std::os::unix::fs::chown(&path, Some(*uid), Some(*gid))?;
        Ok(Input {
            path,
            _folder: Some(folder),
        })
    }
}

/// What ffmpeg reads, removed when dropped (a copy's folder with it).
pub struct Input {
    path: PathBuf,
    _folder: Option<tempfile::TempDir>,
}

impl Input {
    pub fn path(&self) -> &Path {
        &self.path
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

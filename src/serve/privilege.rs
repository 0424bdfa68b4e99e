//! Dropping root after binding: `--user`/`--group` switch the whole process (every thread) to an
//! unprivileged identity; serving as root without them earns a one-line warning.

use nix::unistd::{self, Gid, Group, Uid, User};

use crate::error::{Error, ErrorKind, Result};

/// Switches the process to `user` (its primary group unless `group` is given) and drops supplementary
/// groups. Called after every socket is bound; glibc applies it to every thread of the process.
pub fn drop_to(user: Option<&str>, group: Option<&str>) -> Result<()> {
    if user.is_none() && group.is_none() {
        if Uid::effective().is_root() {
            eprintln!(
                "udpd: warning: serving as root: pass --user NAME (and --group) to drop privileges after binding"
            );
        }
        return Ok(());
    }
    let not_root = || {
        Error::new(
            ErrorKind::PermissionDenied,
            "--user/--group need udpd to start as root: start it as root or drop those flags",
        )
    };
    let account = match user {
        Some(name) => Some(
            User::from_name(name)
                .map_err(|e| Error::runtime(format!("cannot look up user {name:?}: {e}")))?
                .ok_or_else(|| {
                    Error::usage(format!(
                        "--user {name:?}: no such user on this host: create it or name another"
                    ))
                })?,
        ),
        None => None,
    };
    let gid: Gid = match group {
        Some(name) => {
            Group::from_name(name)
                .map_err(|e| Error::runtime(format!("cannot look up group {name:?}: {e}")))?
                .ok_or_else(|| {
                    Error::usage(format!(
                        "--group {name:?}: no such group on this host: create it or name another"
                    ))
                })?
                .gid
        }
        None => account.as_ref().map_or(Gid::effective(), |a| a.gid),
    };
    if !Uid::effective().is_root() {
        // Already that identity (a successor started by a udpd that dropped privileges on reload).
        let same_user = account.as_ref().is_none_or(|a| a.uid == Uid::effective());
        if same_user && gid == Gid::effective() {
            return Ok(());
        }
        return Err(not_root());
    }
    let failed = |what: &str, e: nix::errno::Errno| {
        Error::io(format!("cannot switch to {what}: {e}"), e.into())
    };
    unistd::setgroups(&[gid]).map_err(|e| failed("the group", e))?;
    unistd::setgid(gid).map_err(|e| failed("the group", e))?;
    if let Some(account) = &account {
        unistd::setuid(account.uid).map_err(|e| failed("the user", e))?;
    }
    Ok(())
}

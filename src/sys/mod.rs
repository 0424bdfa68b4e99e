//! The one room where udpd makes raw system calls: `recvmmsg`/`sendmmsg` batches and integer socket
//! options, each behind a safe wrapper, plus the kernel's limits and byte layouts they rely on.
//!
//! `mmsg` holds the batch calls, `wire` encodes and decodes addresses and control messages in safe code,
//! `limits` names every kernel constant the datapath depends on.
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod limits;
mod mmsg;
pub mod wire;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub use mmsg::{
    is_gso_refusal, recv_batch, send_batch, IoRange, OutMessage, RecvInfo, RecvScratch,
    SendScratch, Wait,
};
pub use wire::{PeerAddr, RecvControl, SendControl};

/// Makes a libc call and turns its `-1` into `io::Error::last_os_error()`.
macro_rules! syscall {
    ($call:expr) => {{
        let result = $call;
        if result == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(result)
        }
    }};
}
pub(crate) use syscall;

/// The socket's cumulative count of datagrams the kernel dropped at it (a full receive buffer, a
/// filter), as `SO_MEMINFO` reports it (`SK_MEMINFO_DROPS`, Linux 4.12 and later): the counter
/// `SO_RXQ_OVFL` would attach to every datagram, read once when wanted instead.
pub fn socket_drops(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SK_MEMINFO_VARS is 9 today; room for more, as the kernel copies at most `len` bytes.
    let mut info = [0u32; 16];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` and `len` are valid, writable stack locations for the call; `len` tells the kernel
    // how many bytes it may write into `info`, and it writes back how many it did.
    syscall!(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    let drops = libc::SK_MEMINFO_DROPS as usize;
    if (len as usize) < (drops + 1) * std::mem::size_of::<u32>() {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    Ok(info[drops])
}

/// Takes ownership of a descriptor this process inherited from its parent by number (a socket handed
/// over on reload). Fails unless `fd` is open and is not one of stdin/stdout/stderr.
///
/// Call it at most once per number: the caller reads each number once from the environment that
/// carried it (and removes it), so no two owners of one descriptor can exist.
pub fn adopt_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptor number 0-2 is not an inherited socket",
        ));
    }
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with EBADF when `fd` is not open.
    syscall!(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: `fd` is open (checked above) and was handed to this process by its parent for it to own;
    // nothing else in this process refers to it (see the function's contract), so the OwnedFd is its
    // only owner and closes it exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets or clears `FD_CLOEXEC` on `fd` (cleared only around the spawn of a successor process, so that
/// it inherits the sockets and nothing else does).
pub fn set_close_on_exec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD read and write only the descriptor's flags; `fd` is open for the borrow.
    let flags = syscall!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) })?;
    let flags = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    syscall!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags) }).map(drop)
}

/// Whether `fd`'s open file description is in non-blocking mode (`O_NONBLOCK`), which every process
/// sharing it (a reload's predecessor and successor) sees and sets alike.
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFL only reads the file status flags; `fd` is open for the borrow.
    let flags = syscall!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// Sets an integer socket option.
pub fn set_int_option(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` lives on the stack for the whole call and we pass its exact size; the kernel only
    // reads `optlen` bytes from it. `fd` is a valid open descriptor for the borrow's lifetime.
    syscall!(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    #[test]
    fn tells_a_non_blocking_socket_from_a_blocking_one() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(!super::is_nonblocking(socket.as_fd()).unwrap());
        // A second descriptor of the same socket sees (and sets) the same mode, as another process
        // sharing it would.
        let shared = socket.try_clone().unwrap();
        shared.set_nonblocking(true).unwrap();
        assert!(super::is_nonblocking(socket.as_fd()).unwrap());
        shared.set_nonblocking(false).unwrap();
        assert!(!super::is_nonblocking(socket.as_fd()).unwrap());
    }
}

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
use std::os::fd::{AsRawFd, BorrowedFd};

pub use mmsg::{
    is_gso_refusal, recv_batch, send_batch, IoRange, OutMessage, RecvInfo, RecvScratch, SendScratch,
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

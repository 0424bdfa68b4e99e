//! `recvmmsg`/`sendmmsg` behind safe wrappers: the kernel-facing arrays, allocated once per socket and
//! re-pointed before each call, and the argument-by-argument reasons each call is sound.
//!
//! Both are made as raw system calls (`syscall(2)`), not through glibc's `recvmmsg`/`sendmmsg`: those are
//! cancellation points, and in a multi-threaded process glibc brackets each call with two atomic updates
//! of the thread's cancellation state, for `pthread_cancel`, which nothing in Rust uses. At 100 k/s spread
//! that bracket took 0.2 % of the worker's samples (about 14 ns per datagram).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::limits::MAX_BATCH;
use super::syscall;
use super::wire::{
    self, CmsgBuf, NameBuf, PeerAddr, RecvControl, SendControl, RECV_CMSG_SPACE, SEND_CMSG_SPACE,
};

/// One datagram (or one GRO-coalesced train of datagrams) as `recvmmsg` delivered it.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecvInfo {
    /// Bytes written into the slot (the whole train's length when coalesced).
    pub len: usize,
    /// The datagram was larger than the slot and was cut (`MSG_TRUNC`).
    pub truncated: bool,
    /// Who sent it; empty when the kernel gave no IP address.
    pub peer: PeerAddr,
    /// What its control messages said.
    pub control: RecvControl,
}

/// The kernel-facing arrays for `recvmmsg`, allocated once and re-pointed before each call.
pub struct RecvScratch {
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    names: Vec<NameBuf>,
    controls: Vec<CmsgBuf<RECV_CMSG_SPACE>>,
    /// The buffer address, slot size and count the pointers were last set up for: when a call names the
    /// same, only the fields the kernel overwrites are reset.
    prepared_for: (usize, usize, usize),
    /// Headers the kernel may have written since they were last reset (the ones the last call
    /// received into); every header past these still holds its reset values.
    written: usize,
}

impl RecvScratch {
    /// Scratch for batches of up to `capacity` datagrams (capped at [`MAX_BATCH`]).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_BATCH);
        RecvScratch {
            // SAFETY: `mmsghdr` and `iovec` are plain C structs for which all-zero bytes are a valid value
            // (null pointers and zero lengths).
            headers: vec![unsafe { std::mem::zeroed() }; capacity],
            // SAFETY: as above.
            iovecs: vec![unsafe { std::mem::zeroed() }; capacity],
            names: vec![NameBuf::default(); capacity],
            controls: vec![CmsgBuf::default(); capacity],
            prepared_for: (0, 0, 0),
            written: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.headers.len()
    }
}

/// Whether a receive may wait for its first datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Take what is queued now (`MSG_DONTWAIT`), whatever the socket's blocking mode.
    No,
    /// On a blocking socket, wait for the first datagram (up to the socket's `SO_RCVTIMEO`), then take
    /// what else is queued (`MSG_WAITFORONE`).
    ForOne,
}

/// Receives up to `out.len()` datagrams in one `recvmmsg` call into consecutive `slot_size` slots of `buffer`.
///
/// Returns how many arrived (at least one), or `WouldBlock` when none is queued (with [`Wait::ForOne`]:
/// none arrived before the socket's receive timeout). `buffer` must hold `out.len() * slot_size` bytes;
/// the count is further capped by the scratch's capacity.
pub fn recv_batch(
    fd: BorrowedFd<'_>,
    scratch: &mut RecvScratch,
    buffer: &mut [u8],
    slot_size: usize,
    out: &mut [RecvInfo],
    wait: Wait,
) -> io::Result<usize> {
    // Every slot the buffer holds is prepared once; a receive may use fewer of them (`out.len()`).
    let slots = scratch.capacity().min(buffer.len() / slot_size.max(1));
    let count = out.len().min(slots);
    if count == 0 {
        return Ok(0);
    }
    let base = buffer.as_mut_ptr();
    let wanted = (base as usize, slot_size, slots);
    if scratch.prepared_for == wanted {
        // Same buffer, same slots: every pointer is already right; reset what the kernel overwrote
        // (only the headers it received into: at one datagram per call, one header, not 64).
        for message in &mut scratch.headers[..scratch.written.min(slots)] {
            message.msg_hdr.msg_namelen = std::mem::size_of::<NameBuf>() as libc::socklen_t;
            message.msg_hdr.msg_controllen = RECV_CMSG_SPACE;
            message.msg_hdr.msg_flags = 0;
            message.msg_len = 0;
        }
    } else {
        for i in 0..slots {
            // SAFETY: `i * slot_size + slot_size <= slots * slot_size <= buffer.len()`, so the slot lies
            // inside `buffer`, which is exclusively borrowed for this whole call.
            let slot = unsafe { base.add(i * slot_size) };
            scratch.iovecs[i] = libc::iovec {
                iov_base: slot.cast(),
                iov_len: slot_size,
            };
            let header = &mut scratch.headers[i].msg_hdr;
            header.msg_name = scratch.names[i].0.as_mut_ptr().cast();
            header.msg_namelen = std::mem::size_of::<NameBuf>() as libc::socklen_t;
            // SAFETY: `i < slots <= iovecs.len()`.
            header.msg_iov = unsafe { scratch.iovecs.as_mut_ptr().add(i) };
            header.msg_iovlen = 1;
            header.msg_control = scratch.controls[i].0.as_mut_ptr().cast();
            header.msg_controllen = RECV_CMSG_SPACE;
            header.msg_flags = 0;
            scratch.headers[i].msg_len = 0;
        }
        scratch.prepared_for = wanted;
    }
    // Until the call says how many it received, any of the `count` headers may be written.
    scratch.written = count;
    let flags = match wait {
        Wait::No => libc::MSG_DONTWAIT,
        Wait::ForOne => libc::MSG_WAITFORONE,
    };
    // Argument by argument (recvmmsg(2)): `headers[..count]` are initialised, now or by an earlier call
    // for this very buffer address and slot size (`count <= slots`; the scratch's vectors never move:
    // they are allocated once). Each header points at its own name buffer (128 bytes, as `msg_namelen` says), its
    // own iovec (one slot of `buffer`, `slot_size` bytes) and its own aligned control buffer
    // (`RECV_CMSG_SPACE` bytes, as `msg_controllen` says); `vlen` is `count`; the flags are plain
    // integers; a null timeout means none.
    // SAFETY: every pointer above is owned by `scratch` or `buffer`, both exclusively borrowed for the
    // whole call, so they stay valid and unaliased while the kernel writes through them.
    let received = syscall!(unsafe {
        libc::syscall(
            libc::SYS_recvmmsg,
            libc::c_long::from(fd.as_raw_fd()),
            scratch.headers.as_mut_ptr(),
            count as libc::c_long,
            libc::c_long::from(flags),
            std::ptr::null_mut::<libc::timespec>(),
        )
    })? as usize;
    // The kernel writes a header back only for a datagram it delivered; the one after the last may
    // have failed half-way (its error is reported on the next call), so it counts as written too.
    scratch.written = (received + 1).min(count);
    for (i, info) in out.iter_mut().enumerate().take(received) {
        let message = &scratch.headers[i];
        let header = &message.msg_hdr;
        info.len = (message.msg_len as usize).min(slot_size);
        info.truncated = header.msg_flags & libc::MSG_TRUNC != 0;
        info.peer =
            PeerAddr::from_name(&scratch.names[i], header.msg_namelen as usize).unwrap_or_default();
        wire::decode_recv_control(
            &scratch.controls[i].0,
            header.msg_controllen,
            &mut info.control,
        );
    }
    Ok(received)
}

/// A byte range of one of the buffers handed to [`send_batch`] that becomes one iovec (a datagram, or
/// one or more GSO segments).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoRange {
    /// Index of the buffer in `send_batch`'s `buffers`.
    pub buffer: u32,
    pub offset: u32,
    pub len: u32,
}

/// One outgoing message: its destination, control data and the run of iovecs that make its payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutMessage {
    /// Destination; empty for a connected socket.
    pub peer: PeerAddr,
    pub control: SendControl,
    /// First iovec of this message in the iovec list handed to [`send_batch`].
    pub iov_start: u32,
    /// Number of iovecs (datagrams or GSO segments) in this message.
    pub iov_count: u32,
}

/// The kernel-facing arrays for `sendmmsg`, allocated once and rebuilt before each call.
pub struct SendScratch {
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    names: Vec<NameBuf>,
    controls: Vec<CmsgBuf<SEND_CMSG_SPACE>>,
}

impl SendScratch {
    /// Scratch for up to `max_messages` messages carrying up to `max_iovecs` iovecs in all.
    pub fn new(max_messages: usize, max_iovecs: usize) -> Self {
        let max_messages = max_messages.clamp(1, MAX_BATCH);
        SendScratch {
            // SAFETY: all-zero bytes are a valid `mmsghdr` / `iovec` (null pointers, zero lengths).
            headers: vec![unsafe { std::mem::zeroed() }; max_messages],
            // SAFETY: as above.
            iovecs: vec![unsafe { std::mem::zeroed() }; max_iovecs.max(1)],
            names: vec![NameBuf::default(); max_messages],
            controls: vec![CmsgBuf::default(); max_messages],
        }
    }
}

/// Sends `messages` (as many as fit in the scratch) with one `sendmmsg` call; payloads are the `ranges`
/// (of `buffers`) that each message's iovec run names.
///
/// Never waits for send buffer space (`MSG_DONTWAIT`, whatever the socket's blocking mode). Returns how
/// many messages the kernel took (possibly fewer than given: the caller resends the rest), or the error
/// of the first message. Messages whose iovec run lies outside `ranges`, or whose ranges lie
/// outside their buffer, are refused with `InvalidInput` before anything is sent.
pub fn send_batch(
    fd: BorrowedFd<'_>,
    scratch: &mut SendScratch,
    buffers: &[&[u8]],
    ranges: &[IoRange],
    messages: &[OutMessage],
) -> io::Result<usize> {
    let mut count = 0;
    let mut iov_used = 0;
    for message in messages.iter().take(scratch.headers.len()) {
        let start = message.iov_start as usize;
        let end = start + message.iov_count as usize;
        if end > ranges.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "message names iovecs past the end of the list",
            ));
        }
        if iov_used + (end - start) > scratch.iovecs.len() {
            break;
        }
        let first_iov = iov_used;
        for range in &ranges[start..end] {
            let (offset, len) = (range.offset as usize, range.len as usize);
            let Some(bytes) = buffers
                .get(range.buffer as usize)
                .and_then(|buffer| buffer.get(offset..offset + len))
            else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "iovec range outside its send buffer",
                ));
            };
            scratch.iovecs[iov_used] = libc::iovec {
                // The kernel only reads through this pointer (sendmmsg never writes payloads).
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: len,
            };
            iov_used += 1;
        }
        let name = message.peer.as_bytes();
        scratch.names[count].0[..name.len()].copy_from_slice(name);
        let control_len = wire::encode_send_control(&message.control, &mut scratch.controls[count]);
        let header = &mut scratch.headers[count].msg_hdr;
        header.msg_name = if name.is_empty() {
            std::ptr::null_mut()
        } else {
            scratch.names[count].0.as_mut_ptr().cast()
        };
        header.msg_namelen = name.len() as libc::socklen_t;
        // SAFETY: `first_iov <= iov_used <= iovecs.len()`, so the pointer stays within (or one past) the vector.
        header.msg_iov = unsafe { scratch.iovecs.as_mut_ptr().add(first_iov) };
        header.msg_iovlen = end - start;
        header.msg_control = if control_len == 0 {
            std::ptr::null_mut()
        } else {
            scratch.controls[count].0.as_mut_ptr().cast()
        };
        header.msg_controllen = control_len;
        header.msg_flags = 0;
        scratch.headers[count].msg_len = 0;
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    // Argument by argument (sendmmsg(2)): `headers[..count]` were all initialised in the loop above. Each
    // points at its own name buffer holding `msg_namelen` valid bytes (or null with length 0), at
    // `msg_iovlen` iovecs inside `scratch.iovecs`, each covering a range bounds-checked against its
    // buffer, and at its own aligned control buffer holding `msg_controllen` encoded bytes (or null with 0);
    // the flags are a plain integer.
    // SAFETY: `buffers` are borrowed for the whole call and only read by the kernel; `scratch` is borrowed
    // exclusively, so nothing moves or frees what the headers point at; the kernel writes only `msg_len`.
    let sent = syscall!(unsafe {
        libc::syscall(
            libc::SYS_sendmmsg,
            libc::c_long::from(fd.as_raw_fd()),
            scratch.headers.as_mut_ptr(),
            count as libc::c_long,
            libc::c_long::from(libc::MSG_DONTWAIT),
        )
    })?;
    Ok(sent as usize)
}

/// Whether a `sendmmsg` error on a GSO message may mean the kernel refuses the `UDP_SEGMENT` option itself
/// (rather than the datagram or its destination). Only a hint: a train to an invalid destination gets
/// `EINVAL` too, so the caller must attribute the error before it gives up GSO.
pub fn is_gso_refusal(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    use nix::sys::socket::{setsockopt, sockopt::ReceiveTimestampns};

    use super::{recv_batch, RecvInfo, RecvScratch, Wait};

    /// Sends `count` datagrams to `to`, then receives them in one call; returns which carried a
    /// kernel timestamp.
    fn send_and_receive(
        to: &UdpSocket,
        scratch: &mut RecvScratch,
        buffer: &mut [u8],
        count: usize,
    ) -> Vec<bool> {
        let from = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..count {
            from.send_to(&[i as u8], to.local_addr().unwrap()).unwrap();
        }
        let mut out = [RecvInfo::default(); 8];
        let received = recv_batch(to.as_fd(), scratch, buffer, 64, &mut out, Wait::No).unwrap();
        assert_eq!(received, count, "loopback delivers before send_to returns");
        for (i, info) in out[..received].iter().enumerate() {
            assert_eq!((info.len, buffer[i * 64]), (1, i as u8));
            assert_eq!(info.peer.to_socket_addr(), from.local_addr().unwrap());
        }
        out[..received]
            .iter()
            .map(|info| info.control.rx_time_ns.is_some())
            .collect()
    }

    #[test]
    fn every_header_a_receive_wrote_is_reset_before_the_next() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (mut scratch, mut buffer) = (RecvScratch::new(8), vec![0u8; 8 * 64]);
        // Without timestamps the kernel writes a control length of 0 into each header it receives into.
        assert_eq!(
            send_and_receive(&socket, &mut scratch, &mut buffer, 1),
            [false]
        );
        assert_eq!(
            send_and_receive(&socket, &mut scratch, &mut buffer, 3),
            [false; 3]
        );
        // Every header that held a 0 must have its full control length back, or the timestamps of
        // this batch would be cut off.
        setsockopt(&socket, ReceiveTimestampns, &true).unwrap();
        assert_eq!(
            send_and_receive(&socket, &mut scratch, &mut buffer, 6),
            [true; 6]
        );
    }
}

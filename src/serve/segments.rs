//! The one place that knows how datagrams sit in a GRO buffer and in a GSO train: a received buffer seen
//! as its datagrams, and a sent train cut back into single datagrams. The load generator uses both too.

use crate::sys::{IoRange, OutMessage, SendControl};

/// One received buffer seen as the datagrams it holds: several back to back, each `stride` bytes but
/// the last (which may be shorter), when the kernel coalesced them (GRO); otherwise exactly one, which
/// may be empty.
#[derive(Clone, Copy, Debug)]
pub struct Received<'a> {
    bytes: &'a [u8],
    stride: usize,
}

impl<'a> Received<'a> {
    /// Views `bytes` as the kernel delivered them; `gro_segment` is the `UDP_GRO` segment size, if any.
    #[inline]
    pub fn new(bytes: &'a [u8], gro_segment: Option<u16>) -> Self {
        let stride = match gro_segment {
            Some(size) if usize::from(size) < bytes.len() && size > 0 => usize::from(size),
            _ => bytes.len().max(1),
        };
        Received { bytes, stride }
    }

    /// Every datagram's length but the last one's (the last may be shorter); at least 1.
    #[inline]
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// All the bytes, datagrams back to back.
    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// How many datagrams the buffer holds: 1 for an empty datagram.
    #[inline]
    pub fn count(&self) -> usize {
        // A lone datagram (the common case without GRO) needs no division.
        if self.is_train() {
            self.bytes.len().div_ceil(self.stride)
        } else {
            1
        }
    }

    /// Whether the buffer holds more than one datagram (a coalesced train).
    #[inline]
    pub fn is_train(&self) -> bool {
        self.bytes.len() > self.stride
    }

    /// The first `n` datagrams only (all of them when `n >= count()`; at least one).
    #[inline]
    pub fn prefix(&self, n: usize) -> Received<'a> {
        let end = n.max(1).saturating_mul(self.stride).min(self.bytes.len());
        Received {
            bytes: &self.bytes[..end],
            stride: self.stride,
        }
    }

    /// The datagrams, in order; an empty datagram yields one empty slice.
    #[inline]
    pub fn segments(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (bytes, stride) = (self.bytes, self.stride);
        (0..self.count()).map(move |k| {
            &bytes[(k * stride).min(bytes.len())..((k + 1) * stride).min(bytes.len())]
        })
    }
}

/// Cuts `message` (whose iovecs are `ranges[message.iov_start..][..message.iov_count]`) into one message
/// per datagram, as the kernel would have cut it with `UDP_SEGMENT`: calls `emit(single, range, iov)` for
/// each datagram in order, where `single` carries no segment size and names one iovec (its `iov_start` is
/// left for the caller to set), `range` is that datagram's bytes and `iov` the source iovec's index.
pub fn split_into_datagrams(
    message: &OutMessage,
    ranges: &[IoRange],
    mut emit: impl FnMut(OutMessage, IoRange, usize),
) {
    let segment = u32::from(message.control.segment_size);
    let single = OutMessage {
        iov_count: 1,
        control: SendControl {
            segment_size: 0,
            ..message.control
        },
        ..*message
    };
    let start = message.iov_start as usize;
    let end_iov = start + message.iov_count as usize;
    for (iov, &range) in ranges.iter().enumerate().take(end_iov).skip(start) {
        let end = range.offset + range.len;
        let mut offset = range.offset;
        loop {
            let len = if segment == 0 {
                range.len
            } else {
                (end - offset).min(segment)
            };
            emit(
                single,
                IoRange {
                    buffer: range.buffer,
                    offset,
                    len,
                },
                iov,
            );
            offset += len;
            if offset >= end {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(bytes: &[u8], gro: Option<u16>) -> Vec<Vec<u8>> {
        Received::new(bytes, gro)
            .segments()
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn a_received_buffer_yields_its_datagrams() {
        assert_eq!(cut(b"", None), vec![Vec::<u8>::new()]);
        assert_eq!(cut(b"abc", None), vec![b"abc".to_vec()]);
        assert_eq!(cut(b"abc", Some(3)), vec![b"abc".to_vec()]);
        assert_eq!(cut(b"abc", Some(9)), vec![b"abc".to_vec()]);
        assert_eq!(
            cut(b"abcdefg", Some(3)),
            vec![b"abc".to_vec(), b"def".to_vec(), b"g".to_vec()]
        );
        let view = Received::new(b"abcdef", Some(2));
        assert_eq!((view.stride(), view.count(), view.is_train()), (2, 3, true));
        let first_two = view.prefix(2);
        assert_eq!((first_two.bytes(), first_two.count()), (&b"abcd"[..], 2));
        assert_eq!(view.prefix(1).count(), 1);
        assert!(!view.prefix(1).is_train());
        assert_eq!(view.prefix(99).bytes(), b"abcdef");
        let lone = Received::new(b"ab", Some(2));
        assert_eq!(
            (lone.stride(), lone.count(), lone.is_train()),
            (2, 1, false)
        );
    }

    #[test]
    fn a_train_splits_into_its_datagrams_across_iovecs() {
        let ranges = [
            IoRange {
                buffer: 0,
                offset: 0,
                len: 10,
            },
            IoRange {
                buffer: 1,
                offset: 100,
                len: 3,
            },
        ];
        let mut message = OutMessage {
            iov_start: 0,
            iov_count: 2,
            ..OutMessage::default()
        };
        message.control.segment_size = 4;
        let mut seen = Vec::new();
        split_into_datagrams(&message, &ranges, |single, range, iov| {
            assert_eq!((single.iov_count, single.control.segment_size), (1, 0));
            seen.push((range.buffer, range.offset, range.len, iov));
        });
        assert_eq!(
            seen,
            vec![(0, 0, 4, 0), (0, 4, 4, 0), (0, 8, 2, 0), (1, 100, 3, 1)]
        );
    }
}

//! Criterion bench of today's per-batch hot path without syscalls: the reply-path choice, then either the
//! borrowed echo (replies point into the receive buffer) or the per-datagram handler path (`upper`),
//! both followed by GSO grouping and completion bookkeeping; reported per datagram.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use udpd::handler::{Handler, Upper};
use udpd::serve::queue::{Destination, ReplyQueue, ReplyTo, Stamp};
use udpd::serve::respond::{reply_path, ReplyPath};
use udpd::serve::segments::Received;
use udpd::stats::WorkerStats;
use udpd::sys::PeerAddr;

/// Datagrams per batch.
const BATCH: usize = 64;

/// One received batch as the kernel would leave it: `buffers` slots of `slot` bytes, each holding
/// `per_buffer` datagrams of `payload` bytes from its own sender (GRO-coalesced when `per_buffer > 1`).
struct Batch {
    bytes: Vec<u8>,
    slot: usize,
    buffers: Vec<(usize, usize, SocketAddr, Destination)>,
    payload: usize,
}

fn batch(payload: usize, per_buffer: usize) -> Batch {
    let buffers = BATCH / per_buffer;
    let slot = (payload * per_buffer).next_multiple_of(64);
    let mut bytes = vec![b'a'; buffers * slot];
    let mut list = Vec::with_capacity(buffers);
    for i in 0..buffers {
        let addr: SocketAddr = ([127, 0, 0, 1], 10_000 + i as u16).into();
        let destination = Destination {
            peer: PeerAddr::from_socket_addr(addr),
            source: Some([127, 0, 0, 1].into()),
            ifindex: 0,
        };
        bytes[i * slot] = i as u8;
        list.push((i * slot, payload * per_buffer, addr, destination));
    }
    Batch {
        bytes,
        slot,
        buffers: list,
        payload,
    }
}

/// One batch through the queue, as `serve::respond` does it, then sealed and completed.
fn one_batch(
    queue: &mut ReplyQueue,
    handler: &mut Upper,
    echoes: bool,
    stats: &mut WorkerStats,
    input: &Batch,
) {
    for (group, &(start, len, peer, destination)) in input.buffers.iter().enumerate() {
        let segment = (len > input.payload).then_some(input.payload as u16);
        let view = Received::new(&input.bytes[start..start + len], segment);
        let to = ReplyTo {
            destination,
            group: group as u64,
            stamp: Stamp::measured(1_000, 1),
        };
        match reply_path(&view, echoes, queue.gso_enabled(), 65_535) {
            ReplyPath::Borrow => {
                queue.stage_borrowed(start, len, (view.stride(), view.count()), &to)
            }
            _ => {
                for request in view.segments() {
                    if let Some(n) = handler.handle(request, peer, queue.reply_buffer()) {
                        queue.stage(n, &to);
                    }
                }
            }
        }
    }
    queue.seal();
    let view = queue.send_view(&input.bytes);
    black_box((view.buffers, view.ranges.len(), input.slot));
    let messages = queue.unsent().len();
    let done = queue.complete(messages, |stamp, n| {
        stats.record_latency(5_000 - stamp.rx_time_ns, n, u64::from(stamp.weight))
    });
    stats.counters.tx += done.datagrams;
    black_box(done);
}

fn bench_batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_path");
    group.throughput(Throughput::Elements(BATCH as u64));
    // bulk: 4 senders, 16 datagrams each coalesced by GRO; spread: 64 senders, one datagram each.
    for (name, payload, per_buffer) in [
        ("bulk_64B", 64, 16),
        ("spread_64B", 64, 1),
        ("bulk_1400B", 1400, 16),
        ("spread_1400B", 1400, 1),
    ] {
        let input = batch(payload, per_buffer);
        for (path, echoes) in [("borrowed_echo", true), ("handler_upper", false)] {
            let mut queue = ReplyQueue::new(4 << 20, 8192, true);
            let mut handler = Upper;
            let mut stats = WorkerStats::default();
            let id = BenchmarkId::new(name, path);
            group.bench_with_input(id, &input, |b, input| {
                b.iter(|| one_batch(&mut queue, &mut handler, echoes, &mut stats, input))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_batches);
criterion_main!(benches);

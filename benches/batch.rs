//! Criterion bench of the per-batch path without syscalls: handler, reply staging, GSO grouping and
//! completion bookkeeping, reported per datagram (criterion's throughput in elements).

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use udpd::handler::{Echo, Handler};
use udpd::serve::queue::{Destination, ReplyQueue};
use udpd::stats::WorkerStats;
use udpd::sys::PeerAddr;

const BATCH: usize = 64;

/// One batch's requests: `BATCH` datagrams of `payload` bytes from `peers` senders, `burst` in a row each.
/// Requests of one burst share a group, as the segments of one GRO-coalesced buffer do.
fn requests(
    payload: usize,
    peers: usize,
    burst: usize,
) -> Vec<(Vec<u8>, SocketAddr, Destination, u64)> {
    (0..BATCH)
        .map(|i| {
            let peer_index = (i / burst) % peers;
            let addr: SocketAddr = ([127, 0, 0, 1], 10_000 + peer_index as u16).into();
            let destination = Destination {
                peer: PeerAddr::from_socket_addr(addr),
                source: None,
                ifindex: 0,
            };
            (
                vec![i as u8; payload],
                addr,
                destination,
                (i / burst) as u64,
            )
        })
        .collect()
}

fn one_batch(
    queue: &mut ReplyQueue,
    handler: &mut Echo,
    stats: &mut WorkerStats,
    batch: &[(Vec<u8>, SocketAddr, Destination, u64)],
) {
    for (request, peer, destination, group) in batch {
        if let Some(len) = handler.handle(request, *peer, queue.reply_buffer()) {
            queue.stage(len, destination, *group, 1_000);
        }
    }
    queue.seal();
    let messages = queue.unsent().len();
    let done = queue.complete(messages, |rx, n| stats.record_latency(5_000 - rx, n));
    stats.counters.tx += done.datagrams;
    black_box(done);
}

fn bench_batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_path");
    group.throughput(Throughput::Elements(BATCH as u64));
    // (name, payload, peers, burst): bulk = 4 senders in bursts (coalescible); spread = 64 senders.
    for (name, payload, peers, burst) in [
        ("bulk_64B", 64, 4, 16),
        ("spread_64B", 64, BATCH, 1),
        ("bulk_1400B", 1400, 4, 16),
        ("spread_1400B", 1400, BATCH, 1),
    ] {
        for gso in [true, false] {
            let batch = requests(payload, peers, burst);
            let mut queue = ReplyQueue::new(4 << 20, 8192, gso);
            let mut handler = Echo;
            let mut stats = WorkerStats::default();
            let id = BenchmarkId::new(name, if gso { "gso" } else { "no_gso" });
            group.bench_with_input(id, &batch, |b, batch| {
                b.iter(|| one_batch(&mut queue, &mut handler, &mut stats, batch))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_batches);
criterion_main!(benches);

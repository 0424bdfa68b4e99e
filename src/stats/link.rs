//! The hand-off from workers to the reporter: each worker's [`StatsLink`], the [`Reporter`] that merges
//! them, the [`Interval`] it hands out at each boundary and the [`Summary`] it returns at the end.
//!
//! At each interval boundary a worker swaps in a spare and sends the filled one over a channel; the
//! reporter merges, hands the interval out, clears and sends the buffer back for reuse, so steady state
//! allocates nothing.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::stats::WorkerStats;

/// A worker's stats on their way to the reporter.
pub struct StatsMessage {
    /// The link it came over (where its cleared buffer goes back).
    pub link: usize,
    /// The worker whose totals it joins.
    pub worker: usize,
    pub stats: Box<WorkerStats>,
    /// The worker has stopped; this is its last message.
    pub last: bool,
}

/// A worker's end of the stats hand-off.
pub struct StatsLink {
    link: usize,
    worker: usize,
    to_reporter: Sender<StatsMessage>,
    spares: Receiver<Box<WorkerStats>>,
    spare: Option<Box<WorkerStats>>,
    pub current: Box<WorkerStats>,
}

impl StatsLink {
    /// Hands the current interval's stats to the reporter if a cleared spare is available (otherwise keeps
    /// accumulating: the reporter then sees two intervals at once, nothing is lost).
    pub fn publish(&mut self) {
        if self.spare.is_none() {
            self.spare = self.spares.try_recv().ok();
        }
        if let Some(spare) = self.spare.take() {
            let filled = std::mem::replace(&mut self.current, spare);
            let _ = self.to_reporter.send(StatsMessage {
                link: self.link,
                worker: self.worker,
                stats: filled,
                last: false,
            });
        }
    }

    /// Sends the final stats; the worker records nothing after this.
    pub fn finish(self) {
        let _ = self.to_reporter.send(StatsMessage {
            link: self.link,
            worker: self.worker,
            stats: self.current,
            last: true,
        });
    }
}

/// The reporter's end: receives, merges, prints.
pub struct Reporter {
    from_workers: Receiver<StatsMessage>,
    spares: Vec<Sender<Box<WorkerStats>>>,
    totals: Vec<WorkerStats>,
    interval_stats: WorkerStats,
    started: Instant,
    interval: Duration,
}

/// One finished interval, as the reporter hands it to whoever prints or exports it.
pub struct Interval<'a> {
    /// 1 for the first interval.
    pub index: u64,
    pub length: Duration,
    /// What happened during this interval, all workers merged.
    pub stats: &'a WorkerStats,
    /// Per-worker totals since start (for cumulative exports such as Prometheus counters).
    pub totals: &'a [WorkerStats],
}

/// How long after each interval boundary the reporter prints the interval, so that the workers'
/// hand-offs at the boundary are included: a worker must publish within this of the boundary.
pub fn line_grace(interval: Duration) -> Duration {
    (interval / 5).min(Duration::from_millis(100))
}

/// Creates the reporter and one link per worker.
pub fn channel(workers: usize, interval: Duration, started: Instant) -> (Reporter, Vec<StatsLink>) {
    let owners: Vec<usize> = (0..workers).collect();
    channel_for(&owners, interval, started)
}

/// Creates the reporter and one link per worker thread, link `i` adding into the totals of worker
/// `owners[i]` (several threads of one worker, one per socket group, report as that one worker).
pub fn channel_for(
    owners: &[usize],
    interval: Duration,
    started: Instant,
) -> (Reporter, Vec<StatsLink>) {
    let workers = owners.iter().max().map_or(0, |last| last + 1);
    let (to_reporter, from_workers) = mpsc::channel();
    let mut spares = Vec::with_capacity(owners.len());
    let mut links = Vec::with_capacity(owners.len());
    for (link, &worker) in owners.iter().enumerate() {
        let (spare_tx, spare_rx) = mpsc::channel();
        spares.push(spare_tx);
        links.push(StatsLink {
            link,
            worker,
            to_reporter: to_reporter.clone(),
            spares: spare_rx,
            spare: Some(Box::default()),
            current: Box::default(),
        });
    }
    let reporter = Reporter {
        from_workers,
        spares,
        totals: vec![WorkerStats::default(); workers],
        interval_stats: WorkerStats::default(),
        started,
        interval,
    };
    (reporter, links)
}

/// What the reporter knows at the end: per-worker totals and their merge.
pub struct Summary {
    pub elapsed: Duration,
    pub workers: Vec<WorkerStats>,
    pub total: WorkerStats,
}

impl Reporter {
    /// Receives until every worker has sent its last message, handing each finished interval to
    /// `on_interval` (which prints it, exports it, or both).
    pub fn run(mut self, mut on_interval: impl FnMut(&Interval<'_>)) -> Summary {
        let mut running = self.spares.len();
        let mut next_line = 1u64;
        let grace = line_grace(self.interval);
        while running > 0 {
            let due = self.started + self.interval * next_line as u32 + grace;
            let wait = due.saturating_duration_since(Instant::now());
            match self.from_workers.recv_timeout(wait) {
                Ok(message) => {
                    self.absorb(&message);
                    if message.last {
                        running -= 1;
                    } else {
                        let mut stats = message.stats;
                        stats.reset();
                        let _ = self.spares[message.link].send(stats);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    on_interval(&Interval {
                        index: next_line,
                        length: self.interval,
                        stats: &self.interval_stats,
                        totals: &self.totals,
                    });
                    self.interval_stats.reset();
                    next_line += 1;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let mut total = WorkerStats::default();
        for worker in &self.totals {
            total.merge(worker);
        }
        Summary {
            elapsed: self.started.elapsed(),
            workers: self.totals,
            total,
        }
    }

    fn absorb(&mut self, message: &StatsMessage) {
        self.totals[message.worker].merge(&message.stats);
        self.interval_stats.merge(&message.stats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each link finishes on its own thread while the reporter runs to the end.
    fn finish_all(reporter: Reporter, links: Vec<StatsLink>) -> Summary {
        let handles: Vec<_> = links
            .into_iter()
            .map(|link| std::thread::spawn(move || link.finish()))
            .collect();
        let summary = reporter.run(|_| {});
        for handle in handles {
            handle.join().unwrap();
        }
        summary
    }

    #[test]
    fn reporter_merges_workers_and_recycles_buffers() {
        let (reporter, mut links) = channel(2, Duration::from_secs(3600), Instant::now());
        links[0].current.counters.rx = 5;
        links[0].current.counters.tx = 5;
        links[0].current.record_latency(2_000, 5, 1);
        links[0].publish();
        links[0].current.counters.rx = 1;
        links[0].current.counters.no_reply = 1;
        links[1].current.counters.rx = 3;
        links[1].current.counters.truncated = 3;
        let summary = finish_all(reporter, links);
        assert_eq!(summary.workers[0].counters.rx, 6);
        assert_eq!(summary.workers[1].counters.truncated, 3);
        assert_eq!(summary.total.counters.rx, 9);
        assert_eq!(summary.total.counters.unaccounted(), 0);
        assert_eq!(summary.total.latency_ns.len(), 5);
        let text = summary.render("test");
        assert!(text.contains("accounting: rx=9 = tx=5 + truncated=3 + no_reply=1"));
        assert!(text.contains("(holds)"));
        assert!(text.contains("worker 1: rx=3 tx=0"));
    }

    #[test]
    fn threads_of_one_worker_report_as_that_worker() {
        let (reporter, mut links) =
            channel_for(&[0, 1, 0], Duration::from_secs(3600), Instant::now());
        links[0].current.counters.rx = 2;
        links[1].current.counters.rx = 3;
        links[2].current.counters.rx = 4;
        links[2].publish();
        links[2].current.counters.rx = 1;
        let summary = finish_all(reporter, links);
        assert_eq!(summary.workers.len(), 2);
        assert_eq!(summary.workers[0].counters.rx, 7);
        assert_eq!(summary.workers[1].counters.rx, 3);
        assert_eq!(summary.total.counters.rx, 10);
    }

    #[test]
    fn interval_lines_are_handed_out_at_each_boundary() {
        let (reporter, links) = channel(1, Duration::from_millis(20), Instant::now());
        let link = links.into_iter().next().unwrap();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            // Stay alive until the reporter has printed at least one line.
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
            link.finish();
        });
        let mut lines = Vec::new();
        let mut done = Some(done_tx);
        let _ = reporter.run(|interval| {
            lines.push(interval.text_line());
            done.take();
        });
        worker.join().unwrap();
        assert!(
            lines[0].starts_with('[') && lines[0].contains("rx/s=0"),
            "{lines:?}"
        );
    }
}

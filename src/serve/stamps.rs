//! When arriving datagrams carry kernel receive timestamps: all of them while the server is quiet, and
//! only in windows covering one N-th of the time (`--latency-sample N`) while it is loud.
//!
//! Receive timestamps are one switch for the whole kernel: while any socket on the host has them on,
//! every arriving packet is stamped (a clock read, ~40 ns on our VMs, paid by whichever CPU delivers the
//! packet, on loopback the sender's), whatever the worker sockets say. So while the server receives at
//! least [`ServeConfig::latency_all_below`](crate::config::ServeConfig) datagrams a second (all workers
//! together), [`StampWindows`]' thread holds them on only for one window per [`WINDOW_PERIOD`], at a random
//! offset (so periodic traffic cannot line up with it). To open a window it turns a keeper socket's
//! timestamps on and waits until a datagram the keeper sends itself comes back stamped on arrival (the
//! kernel flips its switch later, from a work queue); only then does it open the window for the workers.
//! Each worker reads the mode before and after every receive ([`WorkerStamps`]): it switches its own
//! socket to match, and a reply stamped in a window counts N times in the histogram, so the histogram's
//! count still estimates the replies. Below the rate every reply is stamped and counts once.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::socket::set_receive_timestamps;
use super::transmit::realtime_ns;
use crate::sys::{recv_batch, RecvInfo, RecvScratch, Wait};

/// While the server is loud, one window opens in each period of this length; it lasts one N-th of it.
pub const WINDOW_PERIOD: Duration = Duration::from_millis(200);
/// How long the thread waits for the kernel to stamp arrivals before it gives a window up.
const LIVE_WAIT: Duration = Duration::from_millis(50);
/// How long a starting server waits for it (about 3 ms on an idle machine).
pub const STARTUP_WAIT: Duration = Duration::from_secs(1);
/// How often it looks while it waits.
const LIVE_POLL: Duration = Duration::from_micros(500);

/// Whether the workers' receives carry timestamps now, as the window thread last set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StampMode {
    /// A quiet server: every receive stamped, each reply counted once.
    Always,
    /// A window of a loud server: every receive stamped, each reply counted N times.
    Open,
    /// Between windows: no timestamps, nothing recorded.
    Closed,
}

impl StampMode {
    const fn code(self) -> u8 {
        match self {
            StampMode::Always => 0,
            StampMode::Open => 1,
            StampMode::Closed => 2,
        }
    }

    const fn from_code(code: u8) -> StampMode {
        match code {
            0 => StampMode::Always,
            1 => StampMode::Open,
            _ => StampMode::Closed,
        }
    }

    /// Whether a receive in this mode asks for timestamps.
    pub const fn stamps(self) -> bool {
        !matches!(self, StampMode::Closed)
    }
}

/// A worker thread's count of received datagrams, alone on its cache line (only its worker writes it).
#[repr(align(64))]
#[derive(Default)]
struct ReceivedCount(AtomicU64);

/// What the window thread and the workers share: the mode, and how much each worker received.
struct Shared {
    mode: AtomicU8,
    received: Box<[ReceivedCount]>,
}

impl Shared {
    fn mode(&self) -> StampMode {
        StampMode::from_code(self.mode.load(Ordering::Relaxed))
    }

    fn set_mode(&self, mode: StampMode) {
        self.mode.store(mode.code(), Ordering::Relaxed);
    }

    fn total_received(&self) -> u64 {
        self.received
            .iter()
            .map(|count| count.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// One worker thread's side of the schedule: whether its socket's timestamps must be switched before a
/// receive, and what each stamped reply of the receive weighs.
pub struct WorkerStamps {
    /// `None`: no windows (latency off, timestamps unsupported, or `--latency-sample 1`): the socket
    /// keeps the timestamps it was opened with and every stamped reply counts once.
    shared: Option<Arc<Shared>>,
    slot: usize,
    every: u32,
    /// How long a window lasts.
    window: Duration,
    received: u64,
    /// What this worker last set its socket to; `None` until it set it (an inherited socket may have
    /// been left either way by the process that handed it over).
    on: Option<bool>,
}

impl WorkerStamps {
    /// Every stamped reply counts once and nothing is switched.
    pub fn unsampled() -> WorkerStamps {
        WorkerStamps {
            shared: None,
            slot: 0,
            every: 1,
            window: WINDOW_PERIOD,
            received: 0,
            on: None,
        }
    }

    /// Before a receive: the setting to switch the socket's timestamps to first, if it must change.
    #[inline]
    pub fn before_receive(&mut self) -> Option<bool> {
        let want = self.shared.as_ref()?.mode().stamps();
        (self.on != Some(want)).then(|| {
            self.on = Some(want);
            want
        })
    }

    /// How soon a receive that waits must return: within one window's length while a window is open,
    /// so that a worker does not sleep on with its timestamps on (holding them on for every packet of
    /// the host) long after the window closed.
    #[inline]
    pub fn wake_within(&self) -> Option<Duration> {
        let shared = self.shared.as_ref()?;
        (shared.mode() == StampMode::Open).then_some(self.window)
    }

    /// After a receive that brought `datagrams`: how many replies each stamped reply of it stands for
    /// (0: the window closed meanwhile, so its stamps are not recorded).
    #[inline]
    pub fn after_receive(&mut self, datagrams: usize) -> u32 {
        let Some(shared) = &self.shared else {
            return 1;
        };
        if datagrams > 0 {
            self.received += datagrams as u64;
            shared.received[self.slot]
                .0
                .store(self.received, Ordering::Relaxed);
        }
        match shared.mode() {
            StampMode::Always => 1,
            StampMode::Open => self.every,
            StampMode::Closed => 0,
        }
    }
}

/// The thread that opens and closes the windows; stops when dropped.
pub struct StampWindows {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Without windows (`--latency-sample 1`): the keeper socket, holding timestamps on.
    _keeper: Option<UdpSocket>,
}

impl StampWindows {
    /// Windows of one `every`-th of the time above `all_below` datagrams a second, for `threads` worker
    /// threads; returns the thread (`None` when there are no windows) and each worker's side.
    ///
    /// With `every` 1 there are none: every datagram is stamped. Nor when no keeper socket can be had
    /// (no loopback): then every datagram is stamped too, and `warnings` says why. Returns once arrivals
    /// are stamped, or after [`STARTUP_WAIT`].
    pub fn start(
        every: usize,
        all_below: u64,
        threads: usize,
        warnings: &mut Vec<String>,
    ) -> (Option<StampWindows>, Vec<WorkerStamps>) {
        let unsampled = || (0..threads).map(|_| WorkerStamps::unsampled()).collect();
        // The worker sockets opened with timestamps on, but the kernel turns its switch on later, and
        // a datagram that arrives before carries no stamp: wait for it (briefly) before serving.
        let keeper = match Keeper::open_live(STARTUP_WAIT) {
            Ok(socket) => socket,
            Err(error) => {
                if every > 1 {
                    warnings.push(format!(
                        "every datagram gets a kernel timestamp: no loopback socket to time sampling windows with ({error})"
                    ));
                }
                return (None, unsampled());
            }
        };
        if every <= 1 {
            // Every datagram stamped: the keeper only holds the switch on (the worker sockets do too).
            return (
                Some(StampWindows {
                    stop: None,
                    thread: None,
                    _keeper: Some(keeper),
                }),
                unsampled(),
            );
        }
        // Sampled at any rate (`all_below` 0): no reply is stamped outside a window, from the start.
        let first = if all_below == 0 {
            StampMode::Closed
        } else {
            StampMode::Always
        };
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(first.code()),
            received: (0..threads).map(|_| ReceivedCount::default()).collect(),
        });
        let every_u32 = every.min(u32::MAX as usize) as u32;
        let workers = (0..threads)
            .map(|slot| WorkerStamps {
                shared: Some(Arc::clone(&shared)),
                slot,
                every: every_u32,
                window: WINDOW_PERIOD / every_u32,
                received: 0,
                on: None,
            })
            .collect();
        let (stop, stopped) = mpsc::channel();
        let schedule = Schedule {
            window: WINDOW_PERIOD / every_u32,
            all_below,
        };
        let thread = std::thread::Builder::new()
            .name("udpd-stamps".into())
            .spawn(move || {
                // The receive scratch stays on the thread that uses it.
                if let Ok(keeper) = Keeper::on(keeper) {
                    schedule.run(&shared, keeper, &stopped);
                }
            });
        match thread {
            Ok(thread) => (
                Some(StampWindows {
                    stop: Some(stop),
                    thread: Some(thread),
                    _keeper: None,
                }),
                workers,
            ),
            Err(error) => {
                warnings.push(format!(
                    "every datagram gets a kernel timestamp: cannot start the sampling thread ({error})"
                ));
                (None, unsampled())
            }
        }
    }
}

impl Drop for StampWindows {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The window thread's rules.
struct Schedule {
    window: Duration,
    all_below: u64,
}

/// Whether the server is loud after a period in which it received `datagrams` in `elapsed`: at
/// `all_below` a second or more, and, once loud, until it falls under half of that (so a rate near the
/// line does not switch every period). `all_below` 0: always loud.
fn is_loud(was_loud: bool, datagrams: u64, elapsed: Duration, all_below: u64) -> bool {
    let line = if was_loud { all_below / 2 } else { all_below };
    datagrams as f64 >= line as f64 * elapsed.as_secs_f64()
}

impl Schedule {
    fn run(&self, shared: &Shared, mut keeper: Keeper, stopped: &Receiver<()>) {
        // The server starts quiet (every datagram stamped, the keeper holding the switch on) unless it
        // samples at any rate.
        let mut loud = shared.mode() == StampMode::Closed;
        let (mut last_total, mut last_at) = (shared.total_received(), Instant::now());
        let mut offsets = RandomOffsets::new();
        if !loud && wait(stopped, WINDOW_PERIOD) {
            return;
        }
        loop {
            let (total, at) = (shared.total_received(), Instant::now());
            loud = is_loud(
                loud,
                total.wrapping_sub(last_total),
                at - last_at,
                self.all_below,
            );
            (last_total, last_at) = (total, at);
            if !loud {
                if shared.mode() != StampMode::Always && keeper.turn_on(stopped) {
                    shared.set_mode(StampMode::Always);
                }
                if wait(stopped, WINDOW_PERIOD) {
                    return;
                }
                continue;
            }
            if shared.mode() == StampMode::Always {
                shared.set_mode(StampMode::Closed);
                keeper.set(false);
            }
            let before = offsets.below(WINDOW_PERIOD - self.window);
            if wait(stopped, before) {
                return;
            }
            if keeper.turn_on(stopped) {
                shared.set_mode(StampMode::Open);
                let stop = wait(stopped, self.window);
                shared.set_mode(StampMode::Closed);
                if stop {
                    return;
                }
            }
            keeper.set(false);
            if wait(stopped, WINDOW_PERIOD - self.window - before) {
                return;
            }
        }
    }
}

/// Sleeps `time`; true when the server stopped meanwhile.
fn wait(stopped: &Receiver<()>, time: Duration) -> bool {
    !matches!(stopped.recv_timeout(time), Err(RecvTimeoutError::Timeout))
}

/// Window offsets no one outside can predict, nor line periodic traffic up with.
struct RandomOffsets {
    state: u64,
}

impl RandomOffsets {
    fn new() -> RandomOffsets {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(0u64);
        RandomOffsets { state: seed | 1 }
    }

    /// A duration in `[0, limit)` (xorshift64; `limit` 0 gives 0).
    fn below(&mut self, limit: Duration) -> Duration {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let nanos = limit.as_nanos() as u64;
        Duration::from_nanos(if nanos == 0 { 0 } else { self.state % nanos })
    }
}

/// A loopback socket whose own timestamps hold the kernel's switch on during a window, and which tells
/// when the switch is really on by sending itself a datagram.
struct Keeper {
    socket: UdpSocket,
    address: SocketAddr,
    scratch: RecvScratch,
    buffer: Vec<u8>,
}

/// Probe datagrams read back at once (more than one only if an earlier probe was left queued).
const PROBES: usize = 4;
const PROBE_SLOT: usize = 64;

impl Keeper {
    /// Binds the keeper's socket, turns its timestamps on and waits up to `within` until arrivals are
    /// stamped (not an error if they are not yet). Fails if a probe does not come back at all, as then no
    /// window could ever be confirmed. The socket goes to the window thread, which makes its keeper
    /// with [`on`](Self::on).
    fn open_live(within: Duration) -> std::io::Result<UdpSocket> {
        let socket = UdpSocket::bind("127.0.0.1:0").or_else(|_| UdpSocket::bind("[::1]:0"))?;
        socket.set_nonblocking(true)?;
        let mut keeper = Keeper::on(socket)?;
        keeper.stamped_on_arrival()?;
        keeper.set(true);
        keeper.wait_until_live(within, None);
        Ok(keeper.socket)
    }

    fn on(socket: UdpSocket) -> std::io::Result<Keeper> {
        Ok(Keeper {
            address: socket.local_addr()?,
            socket,
            scratch: RecvScratch::new(PROBES),
            buffer: vec![0; PROBES * PROBE_SLOT],
        })
    }

    /// Turns the keeper's timestamps on or off (a failure leaves the switch as it was: the next window
    /// waits for it, or stamps stay on longer than needed).
    fn set(&mut self, on: bool) {
        let _ = set_receive_timestamps(&self.socket, on);
    }

    /// Turns timestamps on and waits until arrivals are stamped; false if they were not within
    /// [`LIVE_WAIT`] (or the server stopped).
    fn turn_on(&mut self, stopped: &Receiver<()>) -> bool {
        self.set(true);
        self.wait_until_live(LIVE_WAIT, Some(stopped))
    }

    /// Probes until arrivals are stamped: false after `within`, or when the server stopped.
    fn wait_until_live(&mut self, within: Duration, stopped: Option<&Receiver<()>>) -> bool {
        let deadline = Instant::now() + within;
        loop {
            match self.stamped_on_arrival() {
                Ok(true) => return true,
                // The probe itself failed: trust the switch rather than lose every window.
                Err(_) => return true,
                Ok(false) => {}
            }
            if Instant::now() >= deadline {
                return false;
            }
            match stopped {
                Some(stopped) if wait(stopped, LIVE_POLL) => return false,
                Some(_) => {}
                None => std::thread::sleep(LIVE_POLL),
            }
        }
    }

    /// Sends one datagram to itself and reads it back: whether the kernel stamped it on arrival (before
    /// the send returned, as loopback delivers it). One that arrived before the kernel's switch was on
    /// carries no stamp.
    fn stamped_on_arrival(&mut self) -> std::io::Result<bool> {
        self.socket.send_to(&[0], self.address)?;
        let sent_by = realtime_ns();
        let mut out = [RecvInfo::default(); PROBES];
        let received = recv_batch(
            self.socket.as_fd(),
            &mut self.scratch,
            &mut self.buffer,
            PROBE_SLOT,
            &mut out,
            Wait::No,
        )?;
        Ok(received > 0
            && out[received - 1]
                .control
                .rx_time_ns
                .is_some_and(|stamp| stamp <= sent_by))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(every: u32) -> (Arc<Shared>, WorkerStamps) {
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(StampMode::Always.code()),
            received: (0..2).map(|_| ReceivedCount::default()).collect(),
        });
        let stamps = WorkerStamps {
            shared: Some(Arc::clone(&shared)),
            slot: 1,
            every,
            window: WINDOW_PERIOD / every,
            received: 0,
            on: None,
        };
        (shared, stamps)
    }

    #[test]
    fn a_worker_sets_its_socket_once_then_only_when_the_mode_changes() {
        let (shared, mut stamps) = worker(8);
        // Whatever an inherited socket was left at, the first receive sets it.
        assert_eq!(stamps.before_receive(), Some(true));
        assert_eq!(stamps.before_receive(), None);
        shared.set_mode(StampMode::Closed);
        assert_eq!(stamps.before_receive(), Some(false));
        assert_eq!(stamps.before_receive(), None);
        shared.set_mode(StampMode::Open);
        assert_eq!(stamps.before_receive(), Some(true));
        // Open and Always both stamp: no switch between them.
        shared.set_mode(StampMode::Always);
        assert_eq!(stamps.before_receive(), None);
    }

    #[test]
    fn a_reply_weighs_one_when_quiet_n_in_a_window_and_nothing_between() {
        let (shared, mut stamps) = worker(8);
        assert_eq!(stamps.after_receive(3), 1);
        shared.set_mode(StampMode::Open);
        assert_eq!(stamps.after_receive(3), 8);
        assert_eq!(stamps.wake_within(), Some(WINDOW_PERIOD / 8));
        // The window closed while the receive waited: its stamps are not counted.
        shared.set_mode(StampMode::Closed);
        assert_eq!(stamps.after_receive(3), 0);
        assert_eq!(stamps.wake_within(), None);
        assert_eq!(WorkerStamps::unsampled().after_receive(3), 1);
        assert_eq!(WorkerStamps::unsampled().before_receive(), None);
    }

    #[test]
    fn workers_count_what_they_receive_for_the_rate() {
        let (shared, mut stamps) = worker(8);
        stamps.after_receive(5);
        stamps.after_receive(0);
        stamps.after_receive(7);
        assert_eq!(shared.total_received(), 12);
    }

    #[test]
    fn the_server_is_loud_from_the_rate_until_half_of_it() {
        let second = Duration::from_secs(1);
        let period = Duration::from_millis(200);
        assert!(!is_loud(false, 3_999, period, 20_000));
        assert!(is_loud(false, 4_000, period, 20_000));
        assert!(is_loud(true, 2_000, period, 20_000));
        assert!(!is_loud(true, 1_999, period, 20_000));
        // 0: windows at any rate, even with nothing received.
        assert!(is_loud(false, 0, second, 0));
        assert!(is_loud(true, 0, second, 0));
    }

    #[test]
    fn offsets_stay_below_their_limit() {
        let mut offsets = RandomOffsets::new();
        let limit = Duration::from_millis(5);
        let seen: Vec<_> = (0..1000).map(|_| offsets.below(limit)).collect();
        assert!(seen.iter().all(|offset| *offset < limit));
        assert!(seen.iter().any(|offset| *offset != seen[0]));
        assert_eq!(offsets.below(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_keeper_sees_its_own_datagrams_stamped_on_arrival_once_it_holds_timestamps_on() {
        let mut keeper =
            Keeper::on(Keeper::open_live(Duration::ZERO).expect("a loopback socket")).unwrap();
        keeper.set(true);
        // The kernel flips its switch from a work queue (about 3 ms on an idle machine; a loaded test
        // machine may take longer, so the bound here is generous).
        assert!(
            keeper.wait_until_live(Duration::from_secs(10), None),
            "arrivals must be stamped once the keeper holds timestamps on"
        );
        assert!(keeper.stamped_on_arrival().unwrap());
    }
}

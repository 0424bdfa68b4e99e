//! A full send buffer: replies wait for write space and then all go out, none dropped.
//!
//! On plain loopback the kernel frees a sent datagram's buffer before `sendmmsg` returns, so the send
//! buffer never fills. Here the test thread moves into a network namespace of its own whose loopback
//! has a token-bucket qdisc: replies sit in it holding their socket's buffer, and a daemon with the
//! smallest `--sndbuf` soon gets `EAGAIN`. That is the path where a worker must ask for write-space
//! events before it sleeps (it keeps its socket out of the poll set while busy).

mod common;

use std::net::UdpSocket;
use std::thread;

use common::{is_root, skip_or_fail, tool_runs, Daemon, REPLY_TIMEOUT};
use nix::sched::{unshare, CloneFlags};

const REQUESTS: usize = 100;
const PAYLOAD: usize = 1000;

#[test]
fn replies_that_meet_a_full_send_buffer_wait_for_space_and_all_go_out() {
    if !is_root() {
        skip_or_fail("the write-space test makes a network namespace and a qdisc: it needs root");
        return;
    }
    if !tool_runs("tc", &["-V"]) {
        skip_or_fail("the write-space test needs tc (apt-get install iproute2)");
        return;
    }
    // Namespaces are per thread: everything below, the daemon (a child) included, lives in the new one.
    let outcome = thread::spawn(|| {
        if let Err(error) = unshare(CloneFlags::CLONE_NEWNET) {
            return Err(format!("unshare(CLONE_NEWNET) failed: {error}"));
        }
        if !tool_runs("ip", &["link", "set", "lo", "up"])
            || !tool_runs(
                "tc",
                &[
                    "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "8mbit", "burst", "16kb",
                    "latency", "2s",
                ],
            )
        {
            return Err("could not bring up lo with a tbf qdisc (sch_tbf missing?)".to_string());
        }
        exchange();
        Ok(())
    })
    .join()
    .expect("the namespace thread panicked");
    match outcome {
        Ok(()) => {}
        Err(reason) => skip_or_fail(&reason),
    }
}

/// In the namespace: 100 requests sent at once, each answered with its echo, while the daemon's send
/// buffer holds about two replies.
fn exchange() {
    let daemon = Daemon::start_v4(1, &["--sndbuf", "1024"]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    for id in 0..REQUESTS {
        let mut request = vec![b'.'; PAYLOAD];
        request[..8].copy_from_slice(&(id as u64).to_be_bytes());
        client.send_to(&request, daemon.addr).unwrap();
    }
    let mut seen = [false; REQUESTS];
    let mut buf = vec![0u8; 2048];
    for _ in 0..REQUESTS {
        let (len, from) = client
            .recv_from(&mut buf)
            .expect("every reply must arrive once write space frees");
        assert_eq!((len, from), (PAYLOAD, daemon.addr));
        let id = u64::from_be_bytes(buf[..8].try_into().unwrap()) as usize;
        assert!(!seen[id], "reply {id} arrived twice");
        seen[id] = true;
    }
    let summary = daemon.stop();
    summary.assert_accounting_holds();
    summary.assert_total("rx", REQUESTS as u64);
    summary.assert_total("tx", REQUESTS as u64);
    summary.assert_total("tx_backpressure", 0);
    summary.assert_total_at_least_why(
        "tx_buffer_full",
        1,
        "with a 4 KiB send buffer behind a slow qdisc the kernel must have refused a send",
    );
}

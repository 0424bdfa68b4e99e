//! The library API as a user of the crate sees it: a custom `Handler` started through `udpd::Server`,
//! answered over loopback, stopped through its `ShutdownHandle`, with the summary's books balanced.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use udpd::{Handler, ServeConfig, Server};

/// Replies with how many requests this worker has answered so far, as decimal text.
struct Counter(u64);

impl Handler for Counter {
    fn handle(&mut self, _request: &[u8], _peer: SocketAddr, reply: &mut [u8]) -> Option<usize> {
        self.0 += 1;
        let text = self.0.to_string();
        reply
            .get_mut(..text.len())?
            .copy_from_slice(text.as_bytes());
        Some(text.len())
    }
}

#[test]
fn a_custom_handler_serves_through_the_library() {
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 1,
        cpus: None,
        interval: Duration::from_millis(100),
        ..ServeConfig::default()
    };
    let server = Server::start(&config, || Box::new(Counter(0))).expect("server starts");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    for expected in 1..=3u64 {
        client.send_to(b"tick", server.local_addr()).unwrap();
        let (len, from) = client.recv_from(&mut buf).expect("a reply within 5 s");
        assert_eq!(from, server.local_addr());
        assert_eq!(&buf[..len], expected.to_string().as_bytes());
    }
    server.shutdown_handle().shutdown();
    let summary = server.wait(|_| {});
    assert_eq!(summary.total.counters.rx, 3);
    assert_eq!(summary.total.counters.tx, 3);
    assert_eq!(summary.total.counters.unaccounted(), 0);
}

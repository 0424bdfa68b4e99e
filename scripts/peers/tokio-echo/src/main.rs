//! tokio-echo ADDR: the plain tokio UDP echo (recv_from / send_to on one
//! current-thread runtime), a peer for udpd's scripts/compare.sh.

use tokio::net::UdpSocket;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "0.0.0.0:9999".to_string());
    let sock = UdpSocket::bind(&addr).await?;
    println!("listening on {}", sock.local_addr()?);
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = sock.recv_from(&mut buf).await?;
        // A send error (e.g. ICMP-induced) must not stop the server.
        let _ = sock.send_to(&buf[..n], peer).await;
    }
}

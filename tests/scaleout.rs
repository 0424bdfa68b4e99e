//! `scripts/scaleout.sh`: udpd behind a stateless nftables balancer in network namespaces: the backends'
//! served counts add up to what the client received, every flow sticks to one backend, and stopping one
//! backend moves exactly its flows.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{is_root, parse_u64_terms, run_program_to_end, skip_or_fail, tool_runs, udpd_bin};

/// The script runs about `--duration` plus a few seconds of set-up and scraping; this bounds it generously.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// Whether this process may make network namespaces (root in a container may not).
fn can_make_namespaces() -> bool {
    let name = format!("udpd-probe-{}", std::process::id());
    let made = tool_runs("ip", &["netns", "add", &name]);
    if made {
        tool_runs("ip", &["netns", "del", &name]);
    }
    made
}

#[test]
fn backends_behind_a_stateless_balancer_add_up_and_keep_their_flows() {
    if !is_root() {
        skip_or_fail(
            "the scale-out drill makes network namespaces and nftables rules: it needs root",
        );
        return;
    }
    if !tool_runs("nft", &["--version"]) {
        skip_or_fail("the scale-out drill needs nft (apt-get install nftables)");
        return;
    }
    if !tool_runs("ip", &["-V"]) || !can_make_namespaces() {
        skip_or_fail("the scale-out drill needs `ip netns add` to work (iproute2, CAP_SYS_ADMIN)");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/scaleout.sh");
    let flows = 48;
    let (code, stdout, stderr) = run_program_to_end(
        script.to_str().expect("a UTF-8 path"),
        &[
            "--backends",
            "3",
            "--duration",
            "3",
            "--rate",
            "6000",
            "--flows",
            &flows.to_string(),
            "--udpd",
            udpd_bin(),
        ],
        b"",
        SCRIPT_TIMEOUT,
    );
    let context = format!("exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let last = stdout
        .lines()
        .rfind(|line| line.starts_with("scaleout: "))
        .unwrap_or_else(|| panic!("no final `scaleout:` line\n{context}"));
    let terms = parse_u64_terms(last);
    let term = |key: &str| -> u64 {
        *terms
            .get(key)
            .unwrap_or_else(|| panic!("`{key}=` missing from the final line\n{context}"))
    };
    assert_eq!(code, 0, "the script's own checks failed\n{context}");
    assert_eq!(term("backends"), 3, "{context}");
    assert_eq!(term("flows"), flows, "{context}");
    assert_eq!(term("ok"), 1, "{context}");

    // The sums: what the backends say they sent is what the client got, give or take what it lost.
    let (sent, received, backend_sum, lost) = (
        term("client_sent"),
        term("client_received"),
        term("backend_sum"),
        term("lost"),
    );
    assert!(
        received > 0 && sent > 0,
        "no traffic went through\n{context}"
    );
    assert!(
        received <= backend_sum && backend_sum <= received + lost,
        "backends' udpd_tx sum {backend_sum} against the client's {received} replies and {lost} lost\n{context}"
    );
    assert!(received + lost <= sent, "{context}");
    // Where the loss happened, from the backends' side, accounts for all the client counted as lost.
    assert_eq!(
        term("never_reached") + term("unanswered") + term("return_lost"),
        lost,
        "{context}"
    );

    // Stickiness and the drill: exactly the stopped backend's flows moved, once each; the rest stayed.
    let (sticky, moved, expected) = (
        term("sticky_flows"),
        term("moved_flows"),
        term("expected_moves"),
    );
    assert_eq!(term("flapping_flows"), 0, "{context}");
    assert!(
        expected > 0,
        "the stopped backend served no flow ({flows} flows over 3 backends)\n{context}"
    );
    assert_eq!(moved, expected, "{context}");
    assert_eq!(sticky + moved, flows, "{context}");
    for backend in ["b1", "b2", "b3"] {
        assert!(
            stdout
                .lines()
                .any(|line| line.starts_with(backend) && line.contains("10.77.")),
            "no row for backend {backend}\n{context}"
        );
    }
}

//! Issue 14 (hardening) regression tests: many idle connections on every protocol at once, and
//! the server still answers on each. The full-size run (10,000 per protocol) is
//! `pigeon bench idle`; this test holds 1,000 per protocol so it fits CI's time.

use bench::idle::{PROBES, open_many, raise_open_files_limit, still_open};
use test_support::TestServer;

const PER_PROTOCOL: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_on_every_protocol_leave_the_server_responsive() {
    // Each held connection is a descriptor here and one in the server.
    raise_open_files_limit((PER_PROTOCOL * PROBES.len()) as u64 * 2 + 1024).unwrap();
    // The default limits allow 100 connections per IP: raise them as a busy site would.
    let mut server = TestServer::new(
        super::exe(),
        "[limits]\nmax_connections = 100000\nmax_connections_per_ip = 100000\n\
         max_connection_rate_per_ip = 1000000\n",
    );
    server.admin_ok(&["domain", "add", "localhost", "--no-dkim"]);
    server.start();

    let mut held = Vec::new();
    for probe in PROBES {
        let addr = server.addr(probe.protocol);
        let streams = open_many(probe, addr, PER_PROTOCOL)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", probe.protocol));
        held.push(streams);
    }

    // With all of them held, a new client of every protocol gets its greeting and an answer.
    for probe in PROBES {
        let addr = server.addr(probe.protocol);
        probe
            .round_trip(addr)
            .await
            .unwrap_or_else(|e| panic!("{} while {} held: {e:#}", probe.protocol, held.len()));
    }
    for (probe, streams) in PROBES.iter().zip(&held) {
        let open = streams.iter().filter(|s| still_open(s)).count();
        assert_eq!(open, PER_PROTOCOL, "{} connections closed", probe.protocol);
    }

    // Closing them all frees the server for more: it answers again at once.
    drop(held);
    for probe in PROBES {
        probe.round_trip(server.addr(probe.protocol)).await.unwrap();
    }
    assert!(server.stop().success(), "{}", server.log());
}

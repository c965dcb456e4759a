//! The outbound queue end to end: two pigeon servers for `a.test` and `b.test` that find each
//! other through MX records on a real DNS server (dnsmasq), DKIM/SPF/DMARC across them, DSNs,
//! retries, restarts, and scripted peers that misbehave.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::smtp::SmtpClient;
use test_support::{DnsServer, LOOPBACK_LISTENERS, Record, TestServer, free_port};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::exe;

const PW: &str = "correct horse";
const ALICE: &str = "alice@a.test";
const BOB: &str = "bob@b.test";

/// A server for `domain` named `mx.<domain>`; `mx_port` is where its queue finds other MX
/// hosts, `smtp_port` a fixed extra SMTP listener (so a test can start it later); `dns` is the
/// DNS server's port, 0 for none.
fn mail_server(domain: &str, dns: u16, mx_port: u16, smtp_port: u16, extra: &str) -> TestServer {
    let dns = if dns == 0 {
        "offline = true".to_string()
    } else {
        format!("servers = [\"127.0.0.1:{dns}\"]")
    };
    let config = format!(
        "hostname = \"mx.{domain}\"\ndomain = \"{domain}\"\n\n{LOOPBACK_LISTENERS}\n\
         [[listener]]\nprotocol = \"smtp\"\nbind = \"127.0.0.1:{smtp_port}\"\n\n\
         [auth]\nallow_plaintext_on_loopback = true\n\n\
         [dns]\n{dns}\n\n\
         [queue]\nmx_port = {mx_port}\nretry_schedule_secs = [1]\npoll_secs = 1\n{extra}"
    );
    TestServer::with_toml(exe(), &config)
}

/// `pigeon domain dns` output → the DKIM TXT records in it.
fn dkim_records(server: &TestServer, domain: &str) -> Vec<Record> {
    let out = String::from_utf8(server.admin_ok(&["domain", "dns", domain])).unwrap();
    out.lines()
        .filter(|l| l.contains("._domainkey."))
        .map(|l| {
            let owner = l.split_whitespace().next().unwrap().trim_end_matches('.');
            let value: String = l.split('"').skip(1).step_by(2).collect();
            Record::Txt(owner.to_string(), value)
        })
        .collect()
}

/// Two servers and the DNS that joins them. `b` is not started.
struct World {
    _dns: DnsServer,
    a: TestServer,
    b: TestServer,
}

fn world(a_extra: &str) -> Option<World> {
    world_with(a_extra, "", Vec::new())
}

/// [`world`] with extra config for `b` and extra DNS records.
fn world_with(a_extra: &str, b_extra: &str, extra_records: Vec<Record>) -> Option<World> {
    let dnsmasq = DnsServer::binary()?;
    // Ports are picked free but may be taken by a parallel test before dnsmasq binds: retry.
    let mut last_error = String::new();
    for _ in 0..5 {
        match try_world(&dnsmasq, a_extra, b_extra, &extra_records) {
            Ok(world) => return Some(world),
            Err(e) => last_error = e,
        }
    }
    panic!("no test DNS server: {last_error}");
}

fn try_world(
    dnsmasq: &Path,
    a_extra: &str,
    b_extra: &str,
    extra_records: &[Record],
) -> Result<World, String> {
    let dns_port = free_port();
    let a_port = free_port();
    let b_port = free_port();
    let a = mail_server("a.test", dns_port, b_port, a_port, a_extra);
    let b = mail_server("b.test", dns_port, a_port, b_port, b_extra);
    a.admin_ok(&["domain", "add", "a.test"]);
    a.admin_ok(&["user", "add", ALICE, "--password", PW]);
    b.admin_ok(&["domain", "add", "b.test", "--no-dkim"]);
    b.admin_ok(&["user", "add", BOB, "--password", PW]);
    let local = Ipv4Addr::LOCALHOST;
    let mut records = vec![
        Record::Mx("a.test".into(), "mx.a.test".into(), 10),
        Record::A("mx.a.test".into(), local),
        Record::Mx("b.test".into(), "mx.b.test".into(), 10),
        Record::A("mx.b.test".into(), local),
        Record::Txt("a.test".into(), "v=spf1 ip4:127.0.0.1 -all".into()),
        Record::Txt("_dmarc.a.test".into(), "v=DMARC1; p=reject".into()),
    ];
    records.extend(dkim_records(&a, "a.test"));
    records.extend(extra_records.iter().cloned());
    let dns = DnsServer::try_start(dnsmasq, dns_port, &records)?;
    Ok(World { _dns: dns, a, b })
}

async fn submit(server: &TestServer, from: &str, to: &[&str], message: &[u8]) {
    let mut smtp = SmtpClient::connect(server.addr("submission"), Duration::from_secs(20))
        .await
        .unwrap();
    smtp.ehlo("laptop.a.test").await.unwrap();
    smtp.auth_plain(from, PW).await.unwrap();
    smtp.send(from, to, message).await.unwrap();
    smtp.quit().await.unwrap();
}

fn message(to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Alice <{ALICE}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@a.test>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\n\
         Hello from a.test.\r\n"
    )
    .into_bytes()
}

/// Waits (up to 20 s) until `user` has `n` messages; returns their UIDs.
fn wait_for_mail(server: &TestServer, user: &str, n: usize) -> Vec<u32> {
    let start = Instant::now();
    loop {
        let uids = server.uids(user);
        if uids.len() >= n {
            return uids;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{user} has {} of {n} messages; queue: {}\nlog: {}",
            uids.len(),
            String::from_utf8_lossy(&server.admin_ok(&["queue", "list"])),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_queue(server: &TestServer, what: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let list = String::from_utf8(server.admin_ok(&["queue", "list"])).unwrap();
        if what(&list) {
            return list;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "queue never got there: {list}\nlog: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_crosses_to_the_mx_of_another_server_signed_and_verified() {
    let Some(mut w) = world("") else { return };
    w.a.start();
    w.b.start();
    // A forged result in b's name rides along; b must drop it (RFC 8601 §5).
    let mut forged = b"Authentication-Results: mx.b.test; dkim=pass (forged)\r\n".to_vec();
    forged.extend(message(BOB, "crossing"));
    submit(&w.a, ALICE, &[BOB, "nobody@b.test"], &forged).await;

    let uids = wait_for_mail(&w.b, BOB, 1);
    let stored = String::from_utf8(w.b.stored(BOB, uids[0])).unwrap();
    assert!(stored.contains("Subject: crossing"), "{stored}");
    assert!(stored.contains("Hello from a.test."), "{stored}");
    let results = stored
        .split("Authentication-Results: ")
        .nth(1)
        .expect("an Authentication-Results header");
    assert!(results.starts_with("mx.b.test;"), "{results}");
    assert!(results.contains("dkim=pass header.d=a.test"), "{stored}");
    assert!(results.contains("spf=pass"), "{stored}");
    assert!(results.contains("dmarc=pass"), "{stored}");
    assert!(
        stored.contains("DKIM-Signature: "),
        "signed by a.test: {stored}"
    );
    assert_eq!(
        stored.matches("Authentication-Results: mx.b.test").count(),
        1,
        "{stored}"
    );
    assert!(!stored.contains("(forged)"), "{stored}");

    // The unknown recipient bounces to alice: an RFC 3464 report naming it and the reply.
    let uids = wait_for_mail(&w.a, ALICE, 1);
    let dsn = String::from_utf8(w.a.stored(ALICE, uids[0])).unwrap();
    assert!(dsn.contains("multipart/report"), "{dsn}");
    assert!(dsn.contains("report-type=delivery-status"), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822; nobody@b.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(dsn.contains("550"), "{dsn}");
    assert!(
        dsn.contains("Subject: crossing"),
        "the original's headers come back: {dsn}"
    );
    assert!(dsn.starts_with("Return-Path: <>"), "{dsn}");
    // Nothing is left in the queue, and bob got the message once.
    wait_for_queue(&w.a, |l| l.contains("queue is empty"));
    assert_eq!(w.b.uids(BOB).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_mail_from_a_dmarc_reject_domain_is_refused() {
    let Some(mut w) = world("") else { return };
    w.b.start();
    // Straight to b's MX, claiming to be alice, unsigned: SPF passes (loopback is allowed)
    // but nothing aligns with a DKIM signature... so make SPF fail too with another sender.
    let mut smtp = SmtpClient::connect(w.b.addr("smtp"), Duration::from_secs(20))
        .await
        .unwrap();
    smtp.ehlo("forger.example").await.unwrap();
    let refused = smtp
        .send("someone@elsewhere.test", &[BOB], &message(BOB, "forged"))
        .await;
    let err = refused.expect_err("refused").to_string();
    assert!(err.contains("550") && err.contains("5.7.1"), "{err}");
    assert!(w.b.uids(BOB).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_while_the_receiver_is_down_and_goes_when_it_is_up() {
    let Some(mut w) = world("") else { return };
    w.a.start();
    submit(&w.a, ALICE, &[BOB], &message(BOB, "patience")).await;
    let list = wait_for_queue(&w.a, |l| l.contains("deferred"));
    assert!(list.contains(BOB), "{list}");
    assert!(
        list.contains("mx.b.test"),
        "the error names the host: {list}"
    );
    w.b.start();
    let uids = wait_for_mail(&w.b, BOB, 1);
    assert!(String::from_utf8_lossy(&w.b.stored(BOB, uids[0])).contains("Subject: patience"));
    wait_for_queue(&w.a, |l| l.contains("queue is empty"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_full_queue_sends_everything_once() {
    let Some(mut w) = world("") else { return };
    w.a.start();
    for i in 0..20 {
        submit(&w.a, ALICE, &[BOB], &message(BOB, &format!("queued-{i}"))).await;
    }
    wait_for_queue(&w.a, |l| l.matches("deferred").count() == 20);
    assert!(w.a.stop().success());
    w.b.start();
    w.a.start();
    let uids = wait_for_mail(&w.b, BOB, 20);
    wait_for_queue(&w.a, |l| l.contains("queue is empty"));
    std::thread::sleep(Duration::from_millis(1500));
    let uids_after = w.b.uids(BOB);
    assert_eq!(uids_after.len(), 20, "nothing twice");
    let mut subjects: Vec<String> = uids
        .iter()
        .map(|&uid| {
            let stored = String::from_utf8(w.b.stored(BOB, uid)).unwrap();
            stored
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(String::from))
                .unwrap()
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sender_delivers_its_queue_after_restart() {
    let Some(mut w) = world("") else { return };
    w.a.start();
    for i in 0..10 {
        submit(&w.a, ALICE, &[BOB], &message(BOB, &format!("killed-{i}"))).await;
    }
    wait_for_queue(&w.a, |l| l.matches("deferred").count() == 10);
    // SIGKILL: whatever the queue had claimed is released when the node comes back.
    w.a.kill();
    w.b.start();
    w.a.start();
    wait_for_mail(&w.b, BOB, 10);
    wait_for_queue(&w.a, |l| l.contains("queue is empty"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(w.b.uids(BOB).len(), 10, "each exactly once");
}

/// What a scripted peer does on each connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// RCPT gets 451 on the first connection, 250 later.
    TempfailFirst,
    /// The first connection closes in the middle of the message content.
    DropInData,
    /// A server without STARTTLS.
    Plain,
}

/// A scripted SMTP server on loopback; returns its port and the messages it accepted.
async fn scripted_peer(kind: Peer) -> (u16, Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let commands = Arc::new(Mutex::new(Vec::new()));
    let (acc, cmds) = (accepted.clone(), commands.clone());
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            n += 1;
            let first = n == 1;
            let (acc, cmds) = (acc.clone(), cmds.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                write.write_all(b"220 peer.test ESMTP\r\n").await.unwrap();
                let mut line = String::new();
                let mut recipients = 0;
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    cmds.lock().unwrap().push(line.trim_end().to_string());
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-peer.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                        "MAIL" => {
                            recipients = 0;
                            b"250 2.1.0 ok\r\n"
                        }
                        "RCPT" if kind == Peer::TempfailFirst && first => {
                            b"451 4.3.0 greylisted, come back later\r\n"
                        }
                        "RCPT" => {
                            recipients += 1;
                            b"250 2.1.5 ok\r\n"
                        }
                        // RFC 2920 §3.1: DATA without an accepted recipient is refused.
                        "DATA" if recipients == 0 => b"554 5.5.1 no valid recipients\r\n",
                        "DATA" => {
                            write.write_all(b"354 go ahead\r\n").await.unwrap();
                            let mut body = String::new();
                            loop {
                                line.clear();
                                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if kind == Peer::DropInData && first {
                                    // Hang up after the first content line: no 250 was sent.
                                    return;
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                                body.push_str(&line);
                            }
                            acc.lock().unwrap().push(body);
                            b"250 2.0.0 queued\r\n"
                        }
                        "RSET" | "NOOP" => b"250 ok\r\n",
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"502 5.5.2 no\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, accepted, commands)
}

/// A sender (a.test) with static routes to scripted peers.
async fn sender_with_route(domain: &str, port: u16, extra: &str) -> TestServer {
    // Static routes need no DNS.
    let mut a = mail_server(
        "a.test",
        0,
        25,
        free_port(),
        &format!("{extra}\n[queue.routes]\n\"{domain}\" = \"127.0.0.1:{port}\"\n"),
    );
    a.admin_ok(&["domain", "add", "a.test", "--no-dkim"]);
    a.admin_ok(&["user", "add", ALICE, "--password", PW]);
    a.start();
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_refusal_is_retried_until_accepted() {
    let (port, accepted, _) = scripted_peer(Peer::TempfailFirst).await;
    let a = sender_with_route("c.test", port, "").await;
    submit(
        &a,
        ALICE,
        &["carol@c.test"],
        &message("carol@c.test", "greylisted"),
    )
    .await;
    wait_for_queue(&a, |l| l.contains("queue is empty"));
    let got = accepted.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "delivered once, on the second attempt");
    assert!(got[0].contains("Subject: greylisted"));
    assert!(
        a.log().contains("greylisted, come back later"),
        "the 451 was seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_that_needs_smtputf8_bounces_at_a_peer_without_it() {
    let (port, accepted, _) = scripted_peer(Peer::Plain).await;
    let a = sender_with_route("c.test", port, "").await;
    submit(&a, ALICE, &["josé@c.test"], &message("josé@c.test", "utf8")).await;
    let uids = wait_for_mail(&a, ALICE, 1);
    let dsn = String::from_utf8(a.stored(ALICE, uids[0])).unwrap();
    assert!(dsn.contains("Status: 5.6.7"), "{dsn}");
    assert!(dsn.contains("does not support SMTPUTF8"), "{dsn}");
    assert!(accepted.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_in_data_is_sent_again() {
    let (port, accepted, _) = scripted_peer(Peer::DropInData).await;
    let a = sender_with_route("c.test", port, "").await;
    submit(
        &a,
        ALICE,
        &["carol@c.test"],
        &message("carol@c.test", "dropped"),
    )
    .await;
    wait_for_queue(&a, |l| l.contains("queue is empty"));
    let got = accepted.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("Hello from a.test."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_is_never_given_up_for_plain_text() {
    let (port, accepted, commands) = scripted_peer(Peer::Plain).await;
    let a = sender_with_route("c.test", port, "require_tls = [\"c.test\"]\n").await;
    submit(
        &a,
        ALICE,
        &["carol@c.test"],
        &message("carol@c.test", "secret"),
    )
    .await;
    let list = wait_for_queue(&a, |l| l.contains("deferred") && l.contains("(attempts 2)"));
    assert!(list.contains("does not offer STARTTLS"), "{list}");
    assert!(accepted.lock().unwrap().is_empty());
    assert!(
        !commands
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.starts_with("MAIL")),
        "no envelope went out in the clear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_admin_shows_retries_and_drops() {
    // A peer that always answers 451 (dev failure injection on a pigeon receiver).
    let b_port = free_port();
    let mut b = mail_server("b.test", 0, 25, b_port, "");
    std::fs::write(
        b.data_dir().join("pigeon.toml"),
        std::fs::read_to_string(b.data_dir().join("pigeon.toml"))
            .unwrap()
            .replace("[queue]", "[smtp]\ndev_failures = true\n\n[queue]"),
    )
    .unwrap();
    b.admin_ok(&["domain", "add", "b.test", "--no-dkim"]);
    b.start();
    let a = sender_with_route("b.test", b_port, "").await;
    submit(
        &a,
        ALICE,
        &["tempfail@b.test", "permfail@b.test"],
        &message("tempfail@b.test", "held"),
    )
    .await;
    let list = wait_for_queue(&a, |l| l.contains("Injected temporary failure"));
    let id = list.split_whitespace().next().unwrap().to_string();
    let show = String::from_utf8(a.admin_ok(&["queue", "show", &id])).unwrap();
    assert!(
        show.contains("recipient: tempfail@b.test deferred"),
        "{show}"
    );
    assert!(show.contains("Subject: held"), "{show}");
    assert!(
        String::from_utf8(a.admin_ok(&["queue", "retry", &id]))
            .unwrap()
            .contains("1 recipient")
    );
    assert!(
        String::from_utf8(a.admin_ok(&["queue", "drop", &id]))
            .unwrap()
            .contains("dropped")
    );
    assert!(!a.admin(&["queue", "show", &id]).status.success());
    wait_for_queue(&a, |l| l.contains("queue is empty"));
    // permfail@ bounced at once.
    let uids = wait_for_mail(&a, ALICE, 1);
    let dsn = String::from_utf8(a.stored(ALICE, uids[0])).unwrap();
    assert!(dsn.contains("Injected permanent failure"), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822; permfail@b.test"),
        "{dsn}"
    );
}

/// A throwaway Postfix instance (its own config, queue and mail directories) on a loopback
/// port: `p.test` mailboxes are Maildirs under `mail/`, `a.test` is relayed to `relay_to`.
struct Postfix {
    dir: tempfile::TempDir,
    port: u16,
}

/// A complete master.cf written from scratch, not derived from the machine's
/// `/etc/postfix/master.cf` (which may be anything): the stock services of Postfix 3.x, none
/// chrooted, with smtpd on `127.0.0.1:port` and `postlogd` for `maillog_file`.
fn master_cf(port: u16) -> String {
    let services = [
        (
            format!("127.0.0.1:{port}"),
            "inet",
            "n",
            "-",
            "-",
            "-",
            "smtpd",
        ),
        ("pickup".into(), "unix", "n", "-", "60", "1", "pickup"),
        ("cleanup".into(), "unix", "n", "-", "-", "0", "cleanup"),
        ("qmgr".into(), "unix", "n", "-", "300", "1", "qmgr"),
        ("tlsmgr".into(), "unix", "-", "-", "1000?", "1", "tlsmgr"),
        (
            "rewrite".into(),
            "unix",
            "-",
            "-",
            "-",
            "-",
            "trivial-rewrite",
        ),
        ("bounce".into(), "unix", "-", "-", "-", "0", "bounce"),
        ("defer".into(), "unix", "-", "-", "-", "0", "bounce"),
        ("trace".into(), "unix", "-", "-", "-", "0", "bounce"),
        ("verify".into(), "unix", "-", "-", "-", "1", "verify"),
        ("flush".into(), "unix", "n", "-", "1000?", "0", "flush"),
        ("proxymap".into(), "unix", "-", "-", "-", "-", "proxymap"),
        ("proxywrite".into(), "unix", "-", "-", "-", "1", "proxymap"),
        ("smtp".into(), "unix", "-", "-", "-", "-", "smtp"),
        ("relay".into(), "unix", "-", "-", "-", "-", "smtp"),
        ("showq".into(), "unix", "n", "-", "-", "-", "showq"),
        ("error".into(), "unix", "-", "-", "-", "-", "error"),
        ("retry".into(), "unix", "-", "-", "-", "-", "error"),
        ("discard".into(), "unix", "-", "-", "-", "-", "discard"),
        ("local".into(), "unix", "-", "n", "-", "-", "local"),
        ("virtual".into(), "unix", "-", "n", "-", "-", "virtual"),
        ("lmtp".into(), "unix", "-", "-", "-", "-", "lmtp"),
        ("anvil".into(), "unix", "-", "-", "-", "1", "anvil"),
        ("scache".into(), "unix", "-", "-", "-", "1", "scache"),
        (
            "postlog".into(),
            "unix-dgram",
            "n",
            "-",
            "-",
            "1",
            "postlogd",
        ),
    ];
    // service type private unpriv chroot wakeup maxproc command
    services
        .iter()
        .map(|(name, kind, private, unpriv, wakeup, maxproc, command)| {
            format!("{name} {kind} {private} {unpriv} n {wakeup} {maxproc} {command}\n")
        })
        .collect()
}

impl Postfix {
    fn start(relay_to: u16) -> Option<Postfix> {
        if !test_support::require_tool("postfix") {
            return None;
        }
        // Postfix's master runs as root and hands work to its own `postfix` user.
        if !test_support::is_root() {
            test_support::skip("not root: Postfix's master must start as root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Postfix's own users must reach the queue and the mailboxes.
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        for sub in ["etc", "spool", "data", "mail"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        std::fs::set_permissions(
            root.join("mail"),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let chown = std::process::Command::new("chown")
            .arg("postfix")
            .arg(root.join("data"))
            .status()
            .unwrap();
        assert!(chown.success());
        let port = free_port();
        let master = master_cf(port);
        let etc = root.join("etc");
        std::fs::write(etc.join("master.cf"), master).unwrap();
        let r = root.display();
        std::fs::write(
            etc.join("main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {r}/spool\ndata_directory = {r}/data\n\
                 myhostname = postfix.p.test\nmydomain = p.test\nmyorigin = p.test\nmydestination =\n\
                 inet_interfaces = loopback-only\ninet_protocols = ipv4\nmynetworks = 127.0.0.0/8\n\
                 smtpd_relay_restrictions = permit_mynetworks, reject\n\
                 virtual_mailbox_domains = p.test\nvirtual_mailbox_base = {r}/mail\n\
                 virtual_mailbox_maps = texthash:{r}/etc/vmailbox\n\
                 virtual_uid_maps = static:65534\nvirtual_gid_maps = static:65534\n\
                 transport_maps = texthash:{r}/etc/transport\n\
                 smtp_dns_support_level = disabled\nsmtputf8_enable = no\n\
                 alias_maps =\nalias_database =\n\
                 maillog_file_prefixes = /tmp, {r}\nmaillog_file = {r}/postfix.log\n"
            ),
        )
        .unwrap();
        std::fs::write(etc.join("vmailbox"), "carol@p.test carol/\n").unwrap();
        std::fs::write(
            etc.join("transport"),
            format!("a.test smtp:[127.0.0.1]:{relay_to}\n"),
        )
        .unwrap();
        let postfix = Postfix { dir, port };
        assert!(postfix.control("start"), "postfix start: {}", postfix.log());
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "postfix did not listen: {}",
                postfix.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(postfix)
    }

    fn control(&self, command: &str) -> bool {
        std::process::Command::new("postfix")
            .arg("-c")
            .arg(self.dir.path().join("etc"))
            .arg(command)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }

    /// The messages in carol's Maildir.
    fn mailbox(&self) -> Vec<String> {
        let new = self.dir.path().join("mail/carol/new");
        std::fs::read_dir(new)
            .map(|entries| {
                entries
                    .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.control("abort");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pigeon_and_postfix_relay_to_each_other() {
    let a_port = free_port();
    let Some(postfix) = Postfix::start(a_port) else {
        return;
    };
    let mut a = mail_server(
        "a.test",
        0,
        25,
        a_port,
        &format!(
            "\n[queue.routes]\n\"p.test\" = \"127.0.0.1:{}\"\n",
            postfix.port
        ),
    );
    a.admin_ok(&["domain", "add", "a.test"]);
    a.admin_ok(&["user", "add", ALICE, "--password", PW]);
    a.start();

    // pigeon -> Postfix (PIPELINING, CHUNKING and DSN offered by Postfix).
    submit(
        &a,
        ALICE,
        &["carol@p.test"],
        &message("carol@p.test", "to-postfix"),
    )
    .await;
    let start = Instant::now();
    let got = loop {
        let got = postfix.mailbox();
        if !got.is_empty() {
            break got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "postfix has nothing; queue: {}\npostfix: {}",
            String::from_utf8_lossy(&a.admin_ok(&["queue", "list"])),
            postfix.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("Subject: to-postfix"), "{}", got[0]);
    assert!(got[0].contains("DKIM-Signature: "), "signed on the way out");
    assert!(got[0].contains("Hello from a.test."));
    wait_for_queue(&a, |l| l.contains("queue is empty"));

    // Postfix -> pigeon.
    let mut smtp = SmtpClient::connect(
        ([127, 0, 0, 1], postfix.port).into(),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    smtp.ehlo("client.p.test").await.unwrap();
    let body = "From: <dave@p.test>\r\nTo: <alice@a.test>\r\nSubject: from-postfix\r\n\
                Message-ID: <from-postfix@p.test>\r\n\r\nRelayed by Postfix.\r\n";
    smtp.send("dave@p.test", &[ALICE], body.as_bytes())
        .await
        .unwrap();
    smtp.quit().await.unwrap();
    let start = Instant::now();
    let uid = loop {
        if let Some(&uid) = a.uids(ALICE).first() {
            break uid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing reached alice; postfix: {}",
            postfix.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stored = String::from_utf8(a.stored(ALICE, uid)).unwrap();
    assert!(stored.contains("Subject: from-postfix"), "{stored}");
    assert!(stored.contains("Relayed by Postfix."), "{stored}");
    assert!(
        stored.contains("postfix.p.test"),
        "a Received: from Postfix: {stored}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_mx_and_missing_domains() {
    // c.test has no MX, only an address: it is its own MX (RFC 5321 §5.1).
    let Some(mut w) = world_with(
        "",
        "",
        vec![Record::A("c.test".into(), Ipv4Addr::LOCALHOST)],
    ) else {
        return;
    };
    w.b.admin_ok(&["domain", "add", "c.test", "--no-dkim"]);
    w.b.admin_ok(&["user", "add", "dan@c.test", "--password", PW]);
    w.a.start();
    w.b.start();
    submit(
        &w.a,
        ALICE,
        &["dan@c.test", "eve@nowhere.test"],
        &message("dan@c.test", "implicit"),
    )
    .await;
    let uids = wait_for_mail(&w.b, "dan@c.test", 1);
    assert!(
        String::from_utf8_lossy(&w.b.stored("dan@c.test", uids[0])).contains("Subject: implicit")
    );
    // nowhere.test does not exist (NXDOMAIN): a bounce at once, no retries.
    let uids = wait_for_mail(&w.a, ALICE, 1);
    let dsn = String::from_utf8(w.a.stored(ALICE, uids[0])).unwrap();
    assert!(
        dsn.contains("Final-Recipient: rfc822; eve@nowhere.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 5.1.2"), "{dsn}");
    wait_for_queue(&w.a, |l| l.contains("queue is empty"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_mail_bounces_but_never_to_the_null_sender() {
    let Some(mut w) = world("lifetime_secs = 3\n") else {
        return;
    };
    // Mail from <> reaches the queue through a forwarding alias.
    w.a.admin_ok(&["alias", "add", "fwd@a.test", BOB]);
    w.a.start();
    submit(&w.a, ALICE, &[BOB], &message(BOB, "too-late")).await;
    let mut smtp = SmtpClient::connect(w.a.addr("smtp"), Duration::from_secs(20))
        .await
        .unwrap();
    smtp.ehlo("mx.elsewhere.test").await.unwrap();
    let bounce = "From: MAILER-DAEMON@mx.elsewhere.test\r\nTo: fwd@a.test\r\n\
                  Subject: a-bounce\r\n\r\nUndeliverable.\r\n";
    smtp.send("", &["fwd@a.test"], bounce.as_bytes())
        .await
        .unwrap();
    smtp.quit().await.unwrap();
    let list = String::from_utf8(w.a.admin_ok(&["queue", "list"])).unwrap();
    assert!(
        list.contains("from <>"),
        "the forwarded bounce is queued: {list}"
    );

    // b never comes up: after the lifetime both fail; only alice hears of it.
    let uids = wait_for_mail(&w.a, ALICE, 1);
    let dsn = String::from_utf8(w.a.stored(ALICE, uids[0])).unwrap();
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(dsn.contains("gave up after"), "{dsn}");
    assert!(dsn.contains("Subject: too-late"), "{dsn}");
    wait_for_queue(&w.a, |l| l.contains("queue is empty"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(w.a.uids(ALICE).len(), 1, "no DSN about the bounce");
    assert_eq!(
        String::from_utf8(w.a.admin_ok(&["queue", "list"]))
            .unwrap()
            .trim(),
        "queue is empty",
        "nothing queued to <> either"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smarthost_with_authentication_carries_everything() {
    // b is the smarthost: its submission port, with a relay account allowed to send for a.test.
    let Some(mut w) = world_with(
        "",
        "\n[submission.allowed_senders]\n\"relay@b.test\" = [\"@a.test\"]\n",
        Vec::new(),
    ) else {
        return;
    };
    w.b.admin_ok(&["user", "add", "relay@b.test", "--password", PW]);
    w.b.start();
    let smarthost = w.b.addr("submission");
    let config = w.a.data_dir().join("pigeon.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[queue]\n",
        &format!(
            "[queue]\nsmarthost = \"{smarthost}\"\nsmarthost_username = \"relay@b.test\"\n\
             smarthost_password = \"{PW}\"\n"
        ),
    );
    std::fs::write(&config, text).unwrap();
    w.a.start();
    // dan@c.test does not exist in DNS: the smarthost route needs none.
    submit(&w.a, ALICE, &[BOB], &message(BOB, "via-smarthost")).await;
    let uids = wait_for_mail(&w.b, BOB, 1);
    let stored = String::from_utf8(w.b.stored(BOB, uids[0])).unwrap();
    assert!(stored.contains("Subject: via-smarthost"), "{stored}");
    assert!(
        stored.contains("with ESMTPA"),
        "authenticated hop: {stored}"
    );
    wait_for_queue(&w.a, |l| l.contains("queue is empty"));
}

/// Submits with DSN parameters (RFC 3461) on every RCPT.
async fn submit_with_dsn(server: &TestServer, to: &str, rcpt_params: &str, subject: &str) {
    let mut smtp = SmtpClient::connect(server.addr("submission"), Duration::from_secs(20))
        .await
        .unwrap();
    smtp.ehlo("laptop.a.test").await.unwrap();
    smtp.auth_plain(ALICE, PW).await.unwrap();
    let tx = smtp
        .transaction(
            ALICE,
            " RET=HDRS ENVID=env+2B42",
            &[(to.to_string(), rcpt_params.to_string())],
            &message(to, subject),
            false,
        )
        .await
        .unwrap();
    assert!(tx.data.unwrap().is_positive());
    smtp.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_requests_are_honoured() {
    // A peer without the DSN extension: a requested success notice comes from us ("relayed").
    let (port, accepted, _) = scripted_peer(Peer::Plain).await;
    let a = sender_with_route("c.test", port, "").await;
    submit_with_dsn(
        &a,
        "carol@c.test",
        " NOTIFY=SUCCESS ORCPT=rfc822;Carol@c.test",
        "notify-me",
    )
    .await;
    let uids = wait_for_mail(&a, ALICE, 1);
    assert_eq!(accepted.lock().unwrap().len(), 1, "log: {}", a.log());
    let dsn = String::from_utf8(a.stored(ALICE, uids[0])).unwrap();
    assert!(dsn.contains("Action: relayed"), "{dsn}");
    assert!(
        dsn.contains("Original-Recipient: rfc822; Carol@c.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Original-Envelope-Id: env+42"), "{dsn}");
    assert!(dsn.contains("text/rfc822-headers"), "RET=HDRS: {dsn}");
    assert!(
        !dsn.contains("Hello from a.test."),
        "RET=HDRS returns no body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_notices_when_asked_and_silence_for_never() {
    // The lifetime leaves room for attempts a loaded machine runs late: the delay notice must
    // come before the message expires.
    let Some(mut w) = world("delay_warning_secs = 1\nlifetime_secs = 8\n") else {
        return;
    };
    w.a.start();
    // b stays down: the first message asks for delay notices, the second for nothing at all.
    submit_with_dsn(&w.a, BOB, " NOTIFY=DELAY,FAILURE", "wait-for-it").await;
    submit_with_dsn(&w.a, BOB, " NOTIFY=NEVER", "say-nothing").await;
    let uids = wait_for_mail(&w.a, ALICE, 1);
    let first = String::from_utf8(w.a.stored(ALICE, uids[0])).unwrap();
    assert!(first.contains("Action: delayed"), "{first}");
    assert!(first.contains("Will-Retry-Until:"), "{first}");
    assert!(first.contains("Subject: wait-for-it"), "{first}");
    // Then the failure notice for the first; none ever for the second.
    wait_for_queue(&w.a, |l| l.contains("queue is empty"));
    std::thread::sleep(Duration::from_millis(1500));
    let all: Vec<String> =
        w.a.uids(ALICE)
            .into_iter()
            .map(|uid| String::from_utf8(w.a.stored(ALICE, uid)).unwrap())
            .collect();
    assert_eq!(all.len(), 2, "a delay notice and a failure notice");
    assert!(all[1].contains("Action: failed") && all[1].contains("wait-for-it"));
    assert!(!all.iter().any(|m| m.contains("say-nothing")));
}

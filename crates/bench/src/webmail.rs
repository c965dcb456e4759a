//! `pigeon bench webmail`: the webmail API on a big mailbox: the first page of the message
//! list, a body search, and opening a message, each timed over HTTP on loopback (so the
//! figure is the server's time plus a loopback round trip).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::imap::{PASSWORD, fill};
use crate::{BenchServer, parse_size};

#[derive(clap::Args)]
pub struct Options {
    /// Messages in the mailbox.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Size of each message, e.g. 2k.
    #[arg(long, default_value = "2k", value_parser = parse_size)]
    size: usize,
    /// Times each request is repeated.
    #[arg(long, default_value_t = 20)]
    repeat: usize,
}

const CONFIG: &str = "[[listener]]\nprotocol = \"smtp\"\nbind = \"127.0.0.1:0\"\n\n\
    [[listener]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\ntls = \"none\"\n";

/// An HTTP response: status, headers (names lowercase) and body.
type HttpResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// One HTTP/1.1 request.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let mut response_headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            response_headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let mut data = Vec::new();
    reader.read_to_end(&mut data)?;
    Ok((status, response_headers, data))
}

struct Client {
    addr: SocketAddr,
    cookie: String,
    csrf: String,
}

impl Client {
    fn login(addr: SocketAddr, user: &str) -> anyhow::Result<Client> {
        let body = json!({"username": user, "password": PASSWORD}).to_string();
        let (status, headers, data) = http(
            addr,
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )?;
        if status != 200 {
            bail!("login failed: {status}");
        }
        let cookie = headers
            .iter()
            .find(|(n, _)| n == "set-cookie")
            .and_then(|(_, v)| v.split(';').next())
            .context("no session cookie")?
            .to_string();
        let csrf = serde_json::from_slice::<Value>(&data)?["csrfToken"]
            .as_str()
            .context("no CSRF token")?
            .to_string();
        Ok(Client { addr, cookie, csrf })
    }

    fn api(&self, calls: Value) -> anyhow::Result<Value> {
        let body = json!({ "methodCalls": calls }).to_string();
        let (status, _, data) = http(
            self.addr,
            "POST",
            "/jmap/api",
            &[
                ("Content-Type", "application/json"),
                ("Cookie", &self.cookie),
                ("X-CSRF-Token", &self.csrf),
            ],
            body.as_bytes(),
        )?;
        if status != 200 {
            bail!(
                "API call failed: {status} {}",
                String::from_utf8_lossy(&data)
            );
        }
        let value: Value = serde_json::from_slice(&data)?;
        for response in value["methodResponses"].as_array().into_iter().flatten() {
            if response[0] == "error" {
                bail!("method failed: {response}");
            }
        }
        Ok(value)
    }

    /// Times `calls` `repeat` times; returns (p50, max).
    fn time(&self, repeat: usize, calls: &Value) -> anyhow::Result<(Duration, Duration, Value)> {
        let mut times = Vec::with_capacity(repeat);
        let mut last = Value::Null;
        for _ in 0..repeat {
            let t = Instant::now();
            last = self.api(calls.clone())?;
            times.push(t.elapsed());
        }
        times.sort_unstable();
        Ok((times[times.len() / 2], times[times.len() - 1], last))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(options: Options, exe: PathBuf) -> anyhow::Result<()> {
    let user = "big@localhost";
    let server = BenchServer::start(&exe, &[user], PASSWORD, CONFIG)?;
    let smtp = server.addr("smtp")?;
    let web = server.addr("http")?;
    println!(
        "pigeon bench webmail: {} messages of {} bytes, each request {} times",
        options.messages, options.size, options.repeat
    );
    fill(smtp, user, options.messages, options.size, "filling").await?;
    let started = Instant::now();
    while server.index_backlog(&exe)? > 0 && started.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let repeat = options.repeat.max(1);
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let client = Client::login(web, user)?;
        let boxes = client.api(json!([["Mailbox/get", {}, "m"]]))?;
        let inbox = boxes["methodResponses"][0][1]["list"]
            .as_array()
            .and_then(|l| l.iter().find(|m| m["role"] == "inbox"))
            .and_then(|m| m["id"].as_str())
            .context("no INBOX")?
            .to_string();
        let list = json!([
            ["Email/query", {"filter": {"inMailbox": &inbox}, "position": 0, "limit": 50}, "q"],
            ["Email/get", {"#ids": {"resultOf": "q", "path": "/ids"}}, "g"],
        ]);
        let (p50, max, answer) = client.time(repeat, &list)?;
        let total = &answer["methodResponses"][0][1]["total"];
        println!("message list, first page of 50 (of {total}): p50 {}, max {}", ms(p50), ms(max));
        let search = json!([
            ["Email/query", {"filter": {"inMailbox": &inbox, "body": "zebracorn"}, "limit": 50}, "q"],
            ["Email/get", {"#ids": {"resultOf": "q", "path": "/ids"}}, "g"],
        ]);
        let (p50, max, answer) = client.time(repeat, &search)?;
        let hits = &answer["methodResponses"][0][1]["total"];
        println!("body search ({hits} hits, first 50 shown): p50 {}, max {}", ms(p50), ms(max));
        // A message from the middle of the mailbox.
        let middle = format!("{inbox}-{}", options.messages / 2);
        let open = json!([["Email/get", {"ids": [&middle], "properties": ["body"]}, "g"]]);
        let (p50, max, _) = client.time(repeat, &open)?;
        println!("opening a message: p50 {}, max {}", ms(p50), ms(max));
        Ok(())
    })
    .await??;
    Ok(())
}

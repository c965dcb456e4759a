//! The webmail in a real browser: headless Chromium driven through chromedriver against the
//! real `pigeon serve`. Each step leaves a screenshot in a directory that is deleted when the
//! test passes and kept (and named in the failure) when it fails.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use test_support::TestServer;
use test_support::webdriver::Browser;

use crate::{deliver, exe};

const PW: &str = "browser secret";
const ALICE: &str = "alice@localhost";
const BOB: &str = "bob@localhost";
const WAIT: Duration = Duration::from_secs(15);

/// Screenshots of every step; kept only if the test fails.
struct Steps {
    dir: PathBuf,
    n: usize,
}

impl Steps {
    fn new(test: &str) -> Steps {
        let dir =
            std::env::temp_dir().join(format!("pigeon-webmail-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        eprintln!(
            "screenshots of each step: {} (deleted if the test passes)",
            dir.display()
        );
        Steps { dir, n: 0 }
    }

    fn shot(&mut self, browser: &Browser, step: &str) {
        self.n += 1;
        let _ = std::fs::copy(
            browser.screenshot(step),
            self.dir.join(format!("{:02}-{step}.png", self.n)),
        );
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "the screenshots of this failed test are in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn browser(dir: &Path, shots: &Path) -> Option<Browser> {
    std::fs::create_dir_all(dir).unwrap();
    Browser::start(dir, shots)
}

fn login(b: &Browser, base: &str, user: &str) {
    b.goto(&format!("{base}/"));
    b.wait(
        "the login form",
        "return !document.getElementById('login').hidden",
        WAIT,
    );
    b.type_into("#login-user", user);
    b.type_into("#login-password", PW);
    b.click("#login-submit");
    b.wait(
        "the inbox",
        "return !document.getElementById('app').hidden && document.querySelector('#folder-list li.current[data-role=inbox]') !== null",
        WAIT,
    );
}

/// The id of the first message in the list whose subject is `subject`.
fn wait_for_row(b: &Browser, subject: &str) -> String {
    let script = format!(
        "const li = [...document.querySelectorAll('#messages li')].find(l => l.querySelector('.subject').textContent === {subject:?}); return li ? li.dataset.id : null;"
    );
    b.wait(&format!("a message {subject:?}"), &script, WAIT)
        .as_str()
        .unwrap()
        .to_string()
}

fn click_row(b: &Browser, id: &str) {
    b.click(&format!("#messages li[data-id=\"{id}\"] .subject"));
    b.wait(
        "the message to open",
        &format!(
            "return document.querySelector('#thread article.focused[data-id=\"{id}\"]') !== null"
        ),
        WAIT,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_writes_bob_reads_downloads_and_replies_in_one_conversation() {
    let server = TestServer::with_users(exe(), &[ALICE, BOB], PW);
    let base = format!("http://{}", server.addr("http"));
    let work = tempfile::tempdir().unwrap();
    let mut steps = Steps::new("conversation");
    let Some(alice) = browser(&work.path().join("alice"), &steps.dir) else {
        return;
    };
    let bob = browser(&work.path().join("bob"), &steps.dir).expect("second browser");

    login(&bob, &base, BOB);
    steps.shot(&bob, "bob-logged-in");
    login(&alice, &base, ALICE);
    steps.shot(&alice, "alice-logged-in");

    // Alice writes to bob with an attachment and a Chinese subject.
    let attachment: Vec<u8> = (0..150_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = work.path().join("季度报告.bin");
    std::fs::write(&file, &attachment).unwrap();
    let subject = "季度报告 ✓ Zürich";
    alice.click("#compose");
    alice.type_into("#c-to", BOB);
    alice.type_into("#c-subject", subject);
    alice.type_into("#c-body", "请看附件。");
    alice.type_into("#c-files", &file.display().to_string());
    alice.wait(
        "the upload",
        "return document.querySelectorAll('#c-attachments li').length === 1 && document.querySelectorAll('#c-attachments progress').length === 0",
        WAIT,
    );
    steps.shot(&alice, "alice-composed");
    alice.click("#c-send");
    alice.wait(
        "the message to be sent",
        "return document.getElementById('list-status').textContent.includes('Message sent')",
        WAIT,
    );
    steps.shot(&alice, "alice-sent");

    // Bob sees it arrive without reloading, unread, and opens it.
    let id = wait_for_row(&bob, subject);
    steps.shot(&bob, "bob-new-mail");
    let unread = bob.exec(
        &format!("return document.querySelector('#messages li[data-id=\"{id}\"]').classList.contains('unread')"),
        json!([]),
    );
    assert_eq!(unread, json!(true));
    click_row(&bob, &id);
    let shown = bob.exec(
        "const a = document.querySelector('#thread article.focused'); return [a.querySelector('h2').textContent, a.querySelector('.body-text').textContent, a.querySelector('a.attachment').textContent];",
        json!([]),
    );
    assert_eq!(shown[0], subject);
    assert!(shown[1].as_str().unwrap().contains("请看附件。"), "{shown}");
    assert!(
        shown[2].as_str().unwrap().starts_with("季度报告.bin"),
        "{shown}"
    );
    steps.shot(&bob, "bob-reading");

    // The download has the right name and the same bytes.
    bob.click("#thread article.focused a.attachment");
    let downloaded = work.path().join("bob").join("季度报告.bin");
    let started = std::time::Instant::now();
    while !downloaded.is_file() || std::fs::read(&downloaded).unwrap().len() < attachment.len() {
        assert!(
            started.elapsed() < WAIT,
            "the download did not finish: {:?}",
            std::fs::read_dir(work.path().join("bob"))
                .unwrap()
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        std::fs::read(&downloaded).unwrap(),
        attachment,
        "bytes equal"
    );

    // Bob replies.
    bob.click("#reply");
    bob.wait("the reply form", "return document.getElementById('composer').open && document.getElementById('c-subject').value.startsWith('Re: ')", WAIT);
    bob.type_into("#c-body", "收到，谢谢！");
    steps.shot(&bob, "bob-replying");
    bob.click("#c-send");
    bob.wait(
        "the reply to be sent",
        "return document.getElementById('list-status').textContent.includes('Message sent')",
        WAIT,
    );

    // Alice sees the reply arrive and reads it in the conversation with her own message.
    let reply = wait_for_row(&alice, &format!("Re: {subject}"));
    click_row(&alice, &reply);
    let thread = alice.wait(
        "the conversation",
        "const t = [...document.querySelectorAll('#thread article')]; return t.length === 2 ? t.map(a => [a.querySelector('h2').textContent, a.querySelector('.body-text').textContent]) : null;",
        WAIT,
    );
    steps.shot(&alice, "alice-conversation");
    assert_eq!(thread[0][0], subject, "her sent message first: {thread}");
    assert_eq!(thread[1][0], format!("Re: {subject}"));
    assert!(
        thread[1][1].as_str().unwrap().contains("收到，谢谢！"),
        "{thread}"
    );
    assert!(
        thread[1][1].as_str().unwrap().contains("> 请看附件。"),
        "quoted: {thread}"
    );
}

/// A plain HTTP server on loopback that records every path asked of it.
fn beacon() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            if let Some(path) = request.split_whitespace().nth(1) {
                record.lock().unwrap().push(path.to_string());
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

/// Hostile HTML: each one tries to run script or load something from the beacon.
fn payloads(b: &str) -> Vec<String> {
    let js = |n: u32| format!("fetch('{b}/{n}');top.__xss={n};top.document.title='XSS{n}'");
    let mut p = vec![
        format!("<script>{}</script>", js(1)),
        format!("<img src=x onerror=\"{}\">", js(2)),
        format!("<svg onload=\"{}\"></svg>", js(3)),
        format!(
            "<a id=a href=\"javascript:{}\">click</a><script>a.click()</script>",
            js(4)
        ),
        format!("<body onload=\"{}\">b</body>", js(5)),
        format!("<iframe src=\"{b}/6\"></iframe>"),
        format!("<img src=\"{b}/7\" alt=remote>"),
        format!("<div style=\"background:url({b}/8)\">css</div>"),
        format!("<div style=\"width:expression({})\">ie</div>", js(9)),
        format!("<meta http-equiv=\"refresh\" content=\"0;url={b}/10\">"),
        format!(
            "<form id=f action=\"{b}/11\"><input name=q value=1></form><script>f.submit()</script>"
        ),
        format!("<base href=\"{b}/12/\"><img src=\"x.png\">"),
        format!("<object data=\"{b}/13\"></object>"),
        format!("<embed src=\"{b}/14\">"),
        format!("<link rel=stylesheet href=\"{b}/15\">"),
        format!("<style>@import '{b}/16'; body {{ background: url({b}/16b) }}</style>s"),
        format!("<svg><script>{}</script></svg>", js(17)),
        format!(
            "<math><mi xlink:href=\"javascript:{}\">m</mi></math>",
            js(18)
        ),
        format!(
            "<a href=\"data:text/html,&lt;script&gt;{}&lt;/script&gt;\">d</a>",
            js(20)
        ),
        format!("<video poster=\"{b}/21\"></video>"),
        format!("<audio src=\"{b}/22\" autoplay></audio>"),
        format!("<input type=image src=\"{b}/23\">"),
        format!("<table background=\"{b}/24\"><tr><td>t</td></tr></table>"),
        format!("<img srcset=\"{b}/25 1x\">"),
        format!("<picture><source srcset=\"{b}/26\"><img></picture>"),
        format!("<scr<script>ipt>{}</scr</script>ipt>", js(27)),
        format!("<img src=`x` onerror={}>", js(28)),
        "<img src=x onerror=\"&#x66;&#x65;&#x74;&#x63;&#x68;('BEACON/29')\">".replace("BEACON", b),
        format!("<details open ontoggle=\"{}\">d</details>", js(30)),
        format!(
            "<iframe srcdoc=\"<script>{}</script>\"></iframe>",
            js(31).replace('\'', "&#39;")
        ),
        format!(
            "<svg><animate onbegin=\"{}\" attributeName=x dur=1s></animate></svg>",
            js(32)
        ),
        format!(
            "<noscript><p title=\"</noscript><img src=x onerror={}>\"></noscript>",
            js(33)
        ),
        format!("<img src=\"{}/34\">", b.replacen("http:", "", 1)),
        format!(
            "<style>@font-face {{ font-family: f; src: url({b}/35) }} p {{ font-family: f }}</style><p>font</p>"
        ),
        format!("<marquee onstart=\"{}\">m</marquee>", js(36)),
        format!("<svg><image href=\"{b}/37\"/></svg>"),
        format!("<a href=\"{b}/38\" ping=\"{b}/38p\">link</a>"),
        format!(
            "<div onpointerenter=\"{}\" style=\"position:fixed;inset:0\">cover</div>",
            js(39)
        ),
    ];
    p.push(format!(
        "<img src=\"data:image/svg+xml;base64,{}\">",
        base64_svg(&format!(
            "<svg xmlns='http://www.w3.org/2000/svg' onload=\"{}\"/>",
            js(19)
        ))
    ));
    p
}

fn base64_svg(svg: &str) -> String {
    String::from_utf8(crate::fixtures::base64(svg.as_bytes()))
        .unwrap()
        .replace("\r\n", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_html_never_runs_and_loads_nothing_until_allowed() {
    let server = TestServer::with_users(exe(), &[BOB], PW);
    let base = format!("http://{}", server.addr("http"));
    let (port, requests) = beacon();
    let b = format!("http://127.0.0.1:{port}");
    let hostile = payloads(&b);
    assert!(hostile.len() >= 30);
    for (i, html) in hostile.iter().enumerate() {
        let message = format!(
            "From: attacker@example.com\r\nTo: {BOB}\r\nSubject: hostile {i:02}\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>message {i}</p>{html}</body></html>\r\n"
        );
        deliver(&server, "attacker@example.com", BOB, message.as_bytes()).await;
    }
    let work = tempfile::tempdir().unwrap();
    let mut steps = Steps::new("xss");
    let Some(browser) = Browser::start(work.path(), &steps.dir) else {
        return;
    };
    login(&browser, &base, BOB);
    for i in 0..hostile.len() {
        let id = wait_for_row(&browser, &format!("hostile {i:02}"));
        click_row(&browser, &id);
        browser.wait(
            "the message frame",
            "const f = document.querySelector('#thread article.focused iframe'); return f !== null;",
            WAIT,
        );
        // Give the frame time to load and any payload time to fire.
        std::thread::sleep(Duration::from_millis(400));
        // Hovering and clicking inside the frame must not run anything either.
        let _ = browser.exec(
            "const f = document.querySelector('#thread article.focused iframe'); f.focus(); return true;",
            json!([]),
        );
    }
    steps.shot(&browser, "after-all-hostile-mail");
    let top = browser.exec(
        "return [document.title, window.__xss === undefined ? null : window.__xss, document.cookie];",
        json!([]),
    );
    assert_eq!(top[0], "pigeon mail", "the page title is untouched");
    assert_eq!(top[1], json!(null), "no payload reached the page");
    assert_eq!(top[2], "", "the session cookie is HttpOnly");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        *requests.lock().unwrap(),
        Vec::<String>::new(),
        "nothing left the page while remote content was blocked"
    );

    // The user allows remote images for the message with one: only then does it load.
    let id = wait_for_row(&browser, "hostile 06");
    click_row(&browser, &id);
    browser.click("#thread article.focused .show-images");
    let started = std::time::Instant::now();
    while !requests.lock().unwrap().iter().any(|p| p == "/7") {
        assert!(started.elapsed() < WAIT, "the allowed image never loaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    steps.shot(&browser, "remote-images-allowed");
    let seen = requests.lock().unwrap().clone();
    assert!(
        seen.iter().all(|p| p == "/7"),
        "only the allowed image: {seen:?}"
    );
}

#[test]
fn https_serves_the_site_with_the_server_certificate_and_secure_cookies() {
    if !test_support::require_tool("curl") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB], PW);
    let port = server.addr("http+tls").port();
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-i", "--cacert"])
            .arg(server.cert_pem())
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let page = curl(&[&format!("https://localhost:{port}/")]);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_lowercase()
            .contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    let login = curl(&[
        "-H",
        "Content-Type: application/json",
        "--data",
        &format!("{{\"username\":\"{BOB}\",\"password\":\"{PW}\"}}"),
        &format!("https://localhost:{port}/api/login"),
    ]);
    let cookie = login
        .lines()
        .find(|l| l.to_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("{login}"));
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Secure"),
        "{cookie}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_phone_one_pane_shows_at_a_time() {
    let server = TestServer::with_users(exe(), &[BOB], PW);
    deliver(
        &server,
        "ana@example.com",
        BOB,
        "From: Ana <ana@example.com>\r\nSubject: 手机上看\r\n\r\nsmall screen\r\n".as_bytes(),
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let mut steps = Steps::new("phone");
    let Some(b) = Browser::start(work.path(), &steps.dir) else {
        return;
    };
    b.resize(400, 800);
    login(&b, &format!("http://{}", server.addr("http")), BOB);
    let visible = "const v = id => getComputedStyle(document.getElementById(id)).display !== 'none'; \
                   return [v('folders'), v('list'), v('reader')];";
    assert_eq!(
        b.exec(visible, json!([])),
        json!([false, true, false]),
        "the list alone"
    );
    steps.shot(&b, "phone-list");
    b.click("#menu");
    assert_eq!(
        b.exec(visible, json!([]))[0],
        true,
        "the menu shows the folders"
    );
    b.click("#folder-list li[data-role=inbox]");
    let id = wait_for_row(&b, "手机上看");
    click_row(&b, &id);
    assert_eq!(
        b.exec(visible, json!([])),
        json!([false, false, true]),
        "the message alone"
    );
    steps.shot(&b, "phone-message");
    b.click("#back");
    assert_eq!(
        b.exec(visible, json!([])),
        json!([false, true, false]),
        "back to the list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_draft_is_edited_and_sent_later() {
    let server = TestServer::with_users(exe(), &[ALICE, BOB], PW);
    let work = tempfile::tempdir().unwrap();
    let mut steps = Steps::new("draft");
    let Some(b) = Browser::start(work.path(), &steps.dir) else {
        return;
    };
    login(&b, &format!("http://{}", server.addr("http")), ALICE);
    b.click("#compose");
    b.type_into("#c-to", BOB);
    b.type_into("#c-subject", "草稿");
    b.type_into("#c-body", "first words");
    b.click("#c-save");
    b.wait(
        "the draft to be saved",
        "return document.getElementById('c-status').textContent.startsWith('Draft saved')",
        WAIT,
    );
    b.click("#c-close");
    b.click("#folder-list li[data-role=drafts]");
    let id = wait_for_row(&b, "草稿");
    click_row(&b, &id);
    steps.shot(&b, "draft-opened");
    b.click("#edit-draft");
    b.wait(
        "the draft in the composer",
        "return document.getElementById('composer').open && document.getElementById('c-body').value.includes('first words')",
        WAIT,
    );
    b.type_into("#c-body", " and more");
    b.click("#c-send");
    b.wait(
        "the draft to be sent",
        "return document.getElementById('list-status').textContent.includes('Message sent')",
        WAIT,
    );
    b.wait(
        "the Drafts folder to empty",
        "return document.querySelectorAll('#messages li').length === 0",
        WAIT,
    );
    steps.shot(&b, "drafts-empty");
    let stored = String::from_utf8(server.stored(BOB, 1)).unwrap();
    assert!(stored.contains("first words and more"), "{stored}");
}

//! A small WebDriver client for browser tests: headless Chromium driven through chromedriver
//! (Debian packages `chromium` and `chromium-driver`), over the W3C WebDriver JSON protocol.
//! On failure a test calls [`Browser::screenshot`] to keep a picture of each step.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{free_port, require_tool};

/// One browser window, closed (with its chromedriver) when dropped.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    /// Where screenshots go.
    pub shots: PathBuf,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Starts chromedriver and a headless Chromium that downloads into `downloads`; None
    /// (skipped loudly, or a failure under PIGEON_REQUIRE_ALL) without them.
    pub fn start(downloads: &Path, shots: &Path) -> Option<Browser> {
        if !require_tool("chromedriver") || !require_tool("chromium") {
            return None;
        }
        let binary = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or("chromium");
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            shots: shots.to_owned(),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let created = browser.request(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": binary,
                    "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                             "--disable-gpu", "--window-size=1280,900", "--lang=en-US"],
                    "prefs": {
                        "download.default_directory": downloads.display().to_string(),
                        "download.prompt_for_download": false,
                        "safebrowsing.enabled": false,
                    },
                },
            }}})),
        );
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        // Downloads in headless Chromium need an explicit allowance.
        browser.command(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Browser.setDownloadBehavior", "params": {
                "behavior": "allow", "downloadPath": downloads.display().to_string()
            }}),
        );
        Some(browser)
    }

    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect chromedriver");
        stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write to chromedriver");
        let mut reader = BufReader::new(stream);
        let mut length = None;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read chromedriver");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let mut data = Vec::new();
        match length {
            Some(n) => {
                data.resize(n, 0);
                reader.read_exact(&mut data).expect("read body");
            }
            None => {
                reader.read_to_end(&mut data).expect("read body");
            }
        }
        let value: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
        value["value"].clone()
    }

    fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = if method == "GET" || method == "DELETE" {
            None
        } else {
            Some(body)
        };
        self.request(method, &path, body)
    }

    fn checked(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let value = self.command(method, path, body);
        match value.get("error") {
            Some(error) => Err(format!("{error}: {}", value["message"])),
            None => Ok(value),
        }
    }

    pub fn goto(&self, url: &str) {
        self.checked("POST", "/url", json!({ "url": url }))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Sets the window size (a phone is about 400 wide).
    pub fn resize(&self, width: u32, height: u32) {
        self.checked(
            "POST",
            "/window/rect",
            json!({ "width": width, "height": height }),
        )
        .unwrap_or_else(|e| panic!("resize: {e}"));
    }

    /// Runs JavaScript (`arguments[i]` are `args`) and returns its result.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.checked(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns something truthy; returns it.
    pub fn wait(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            if let Ok(value) = self.checked(
                "POST",
                "/execute/sync",
                json!({ "script": script, "args": [] }),
            ) {
                let truthy = !matches!(value, Value::Null | Value::Bool(false))
                    && value != json!("")
                    && value != json!(0);
                if truthy {
                    return value;
                }
            }
            if started.elapsed() > timeout {
                let shot = self.screenshot(&format!("timeout-{}", what.replace(' ', "-")));
                panic!(
                    "timed out waiting for {what} (screenshot {})",
                    shot.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn element(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            match self.checked(
                "POST",
                "/element",
                json!({ "using": "css selector", "value": css }),
            ) {
                Ok(found) => {
                    return found[ELEMENT]
                        .as_str()
                        .unwrap_or_else(|| panic!("no element id in {found}"))
                        .to_string();
                }
                Err(e) if started.elapsed() > Duration::from_secs(10) => {
                    let shot = self.screenshot("missing-element");
                    panic!("no element {css}: {e} (screenshot {})", shot.display());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Clicks the element; if the page re-rendered it meanwhile (a push refreshed a list),
    /// finds it again.
    pub fn click(&self, css: &str) {
        let mut tries = 0;
        loop {
            let id = self.element(css);
            match self.checked("POST", &format!("/element/{id}/click"), json!({})) {
                Ok(_) => return,
                Err(e) if e.contains("stale element") && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    /// Types into an input (for a file input: the file's path).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.checked(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Saves a PNG of the window as `<shots>/<name>.png`; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let _ = std::fs::create_dir_all(&self.shots);
        let path = self.shots.join(format!("{name}.png"));
        if let Some(data) = self.command("GET", "/screenshot", Value::Null).as_str()
            && let Ok(png) = base64::engine::general_purpose::STANDARD.decode(data)
        {
            let _ = std::fs::write(&path, png);
        }
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.command("DELETE", "", Value::Null);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

//! The admin command line against a real data directory.

use std::io::Write;
use std::process::{Command, Stdio};

use test_support::TestServer;

use crate::exe;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn domains_users_aliases_and_their_errors() {
    let server = TestServer::new(exe(), "");
    let out = server.admin(&["user", "add", "a@nowhere.test", "--password", "x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown domain nowhere.test"),
        "{}",
        stderr(&out)
    );

    server.admin_ok(&["domain", "add", "Example.TEST"]);
    let out = server.admin(&["domain", "add", "example.test"]);
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let out = server.admin(&["domain", "add", "bad domain"]);
    assert!(
        stderr(&out).contains("malformed domain"),
        "{}",
        stderr(&out)
    );

    server.admin_ok(&["user", "add", "carol@example.test", "--password", "pw"]);
    let out = server.admin(&["user", "add", "Carol@example.test", "--password", "pw"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let out = server.admin(&["user", "add", "not-an-address", "--password", "pw"]);
    assert!(
        stderr(&out).contains("malformed address"),
        "{}",
        stderr(&out)
    );

    // --password-stdin reads the first line.
    let mut child = Command::new(exe())
        .args(["--data"])
        .arg(server.data_dir())
        .args(["user", "add", "dan@example.test", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let users = String::from_utf8(server.admin_ok(&["user", "list"])).unwrap();
    assert_eq!(users, "carol@example.test\ndan@example.test\n");

    let out = server.admin(&["domain", "del", "example.test"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("still has 2 user(s)"),
        "{}",
        stderr(&out)
    );

    server.admin_ok(&[
        "alias",
        "add",
        "sales@example.test",
        "carol@example.test",
        "x@remote.test",
    ]);
    server.admin_ok(&["alias", "add", "@example.test", "dan@example.test"]);
    let aliases = String::from_utf8(server.admin_ok(&["alias", "list"])).unwrap();
    assert!(
        aliases.contains("sales@example.test -> carol@example.test, x@remote.test"),
        "{aliases}"
    );
    assert!(
        aliases.contains("@example.test -> dan@example.test"),
        "{aliases}"
    );
    let out = server.admin(&["alias", "add", "x@unknown.test", "carol@example.test"]);
    assert!(stderr(&out).contains("unknown domain"), "{}", stderr(&out));

    server.admin_ok(&["alias", "del", "sales@example.test"]);
    server.admin_ok(&["alias", "del", "@example.test"]);
    server.admin_ok(&["user", "passwd", "carol@example.test", "--password", "new"]);
    let out = server.admin(&["user", "passwd", "nobody@example.test", "--password", "new"]);
    assert!(stderr(&out).contains("no such user"), "{}", stderr(&out));
    server.admin_ok(&["user", "del", "carol@example.test"]);
    server.admin_ok(&["user", "del", "dan@example.test"]);
    server.admin_ok(&["domain", "del", "example.test"]);
    assert_eq!(server.admin_ok(&["domain", "list"]), b"");
    let verify = String::from_utf8(server.admin_ok(&["verify"])).unwrap();
    assert!(verify.ends_with("ok\n"), "{verify}");
    let status = String::from_utf8(server.admin_ok(&["status"])).unwrap();
    assert!(
        status.contains("accounts: 0\n") && status.contains("awaiting indexing: 0\n"),
        "{status}"
    );
}

#[test]
fn passwords_are_hashed_with_argon2() {
    let server = TestServer::new(exe(), "");
    server.admin_ok(&["domain", "add", "localhost"]);
    server.admin_ok(&[
        "user",
        "add",
        "eve@localhost",
        "--password",
        "hunter2-unique",
    ]);
    let db = std::fs::read(server.data_dir().join("pigeon.db")).unwrap();
    let wal = std::fs::read(server.data_dir().join("pigeon.db-wal")).unwrap_or_default();
    let all = [db, wal].concat();
    let text = String::from_utf8_lossy(&all);
    assert!(
        !text.contains("hunter2-unique"),
        "the password is stored in clear"
    );
    assert!(text.contains("$argon2id$"), "an Argon2id hash is stored");
}

#[test]
fn bad_config_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "domain = \"bad domain\"\n[smtp]\nmax_recipients = 0\nmax_line_length = 5\n",
    )
    .unwrap();
    let out = Command::new(exe())
        .arg("--config")
        .arg(&path)
        .arg("--data")
        .arg(dir.path())
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("domain \"bad domain\""), "{err}");
    assert!(err.contains("max_recipients"), "{err}");
    assert!(err.contains("max_line_length"), "{err}");

    std::fs::write(&path, "domian = \"typo.test\"\n").unwrap();
    let out = Command::new(exe())
        .arg("--config")
        .arg(&path)
        .arg("verify")
        .output()
        .unwrap();
    assert!(stderr(&out).contains("unknown field"), "{}", stderr(&out));
}

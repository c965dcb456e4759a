//! The user agent's accounts.
//!
//! Accounts live in `accounts.toml` under `$PIGEON_HOME`, else `$XDG_CONFIG_HOME/pigeon`, else
//! `~/.config/pigeon`. Passwords are never stored there: they come from `PIGEON_PASSWORD`, a
//! configured command (a keyring helper, say), or a prompt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use message::compose::Mailbox;
use serde::{Deserialize, Serialize};

/// One mail account of the user agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub email: String,
    pub name: Option<String>,
    pub host: String,
    /// Submission port (587 with STARTTLS, or 465 with `implicit_tls`).
    pub submission_port: u16,
    #[serde(default)]
    pub implicit_tls: bool,
    /// IMAP over TLS (993): the Sent copy, and reading.
    pub imap_port: Option<u16>,
    /// POP3 over TLS (995): `pigeon read pop3`.
    #[serde(default)]
    pub pop3_port: Option<u16>,
    pub username: String,
    /// A command whose first output line is the password.
    pub password_command: Option<String>,
    /// Trust any certificate (self-signed test servers).
    #[serde(default)]
    pub insecure: bool,
    /// Trust the certificates in this PEM file.
    pub ca: Option<PathBuf>,
}

/// The accounts file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accounts {
    /// The name of the account used when none is named.
    pub default: Option<String>,
    #[serde(default)]
    pub accounts: BTreeMap<String, Account>,
}

/// Where the accounts file is.
pub fn accounts_path() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("PIGEON_HOME") {
        return Ok(PathBuf::from(home).join("accounts.toml"));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(base.join("pigeon").join("accounts.toml"))
}

/// The accounts in `path`; none when the file does not exist.
pub fn load_accounts(path: &Path) -> anyhow::Result<Accounts> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("read {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Accounts::default()),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Adds (or replaces) account `name`, the default if `default` or if there was none; returns
/// the file it was saved in.
pub fn add_account(name: &str, account: Account, default: bool) -> anyhow::Result<PathBuf> {
    let path = accounts_path()?;
    let mut accounts = load_accounts(&path)?;
    Mailbox::parse(&account.email).map_err(anyhow::Error::msg)?;
    accounts.accounts.insert(name.to_string(), account);
    if default || accounts.default.is_none() {
        accounts.default = Some(name.to_string());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(&path, toml::to_string_pretty(&accounts)?)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// The account named `name`, else the default one, with its name.
pub fn pick_account(name: Option<&str>) -> anyhow::Result<(String, Account)> {
    let path = accounts_path()?;
    let accounts = load_accounts(&path)?;
    let name = match name.or(accounts.default.as_deref()) {
        Some(n) => n.to_string(),
        None => bail!("no account yet: add one with `pigeon account add`"),
    };
    let account = accounts
        .accounts
        .get(&name)
        .cloned()
        .with_context(|| format!("no account named {name} in {}", path.display()))?;
    Ok((name, account))
}

/// The account's password: `PIGEON_PASSWORD`, else the password command's first line, else a
/// prompt on the terminal.
pub fn password(account: &Account) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("PIGEON_PASSWORD") {
        return Ok(password);
    }
    if let Some(command) = &account.password_command {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .output()
            .with_context(|| format!("run password command {command:?}"))?;
        if !out.status.success() {
            bail!("password command {command:?} failed");
        }
        let text = String::from_utf8(out.stdout).context("password is not UTF-8")?;
        return Ok(text.lines().next().unwrap_or_default().to_string());
    }
    rpassword::prompt_password(format!("password for {}: ", account.username))
        .context("read the password")
}

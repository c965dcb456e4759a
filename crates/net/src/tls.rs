//! TLS for every listener: certificates from PEM files or a self-signed one made on first
//! start, reloadable without dropping connections (SIGHUP), TLS 1.2 and 1.3 only, ring as the
//! crypto provider.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// PEM files named in the config.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate for `hostname`, made once and kept in `dir`.
    SelfSigned { dir: PathBuf, hostname: String },
}

/// Facts about an established TLS session, for `Received:` headers and SASL channel binding.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    pub cipher: String,
    /// RFC 9266 `tls-exporter` channel binding (TLS 1.3 only).
    pub exporter: Option<Vec<u8>>,
    /// RFC 5929 `tls-server-end-point`: SHA-256 of our certificate.
    pub server_end_point: Option<Vec<u8>>,
}

impl TlsInfo {
    /// `TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384`, for `Received:` headers.
    pub fn describe(&self) -> String {
        format!("{} with cipher {}", self.version, self.cipher)
    }
}

/// Why TLS could not be set up.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn err(context: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError(format!("{context}: {e}"))
}

struct Loaded {
    key: Arc<CertifiedKey>,
    end_point: Vec<u8>,
}

/// The server's certificate, swappable at run time.
struct Resolver {
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("cert lock poisoned").key.clone())
    }
}

/// The TLS acceptor shared by all listeners.
#[derive(Clone)]
pub struct Tls {
    source: CertSource,
    resolver: Arc<Resolver>,
    acceptor: tokio_rustls::TlsAcceptor,
}

fn load(source: &CertSource) -> Result<Loaded, TlsError> {
    let (certs, key) = match source {
        // The operator's files are used as they are.
        CertSource::Files { cert, key } => read_pem(cert, key)?,
        CertSource::SelfSigned { dir, hostname } => {
            let cert = dir.join("cert.pem");
            let key = dir.join("key.pem");
            let renew = if !cert.exists() || !key.exists() {
                Some("there is none yet".to_string())
            } else {
                renewal_reason(&cert, hostname, common::clock::now())
            };
            if let Some(why) = renew {
                generate(dir, hostname, &cert, &key, &why)?;
            }
            read_pem(&cert, &key)?
        }
    };
    let signing =
        provider::sign::any_supported_type(&key).map_err(|e| err("unusable private key", e))?;
    let end_point = ring::digest::digest(&ring::digest::SHA256, certs[0].as_ref())
        .as_ref()
        .to_vec();
    Ok(Loaded {
        key: Arc::new(CertifiedKey::new(certs, signing)),
        end_point,
    })
}

fn read_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(&format!("read {}", cert.display()), e))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(&format!("parse {}", cert.display()), e))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{} holds no certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| err(&format!("read {}", key.display()), e))?;
    Ok((certs, key))
}

/// A certificate made here is valid this long from the day before it is made: browsers
/// refuse server certificates valid for more than 825 days (Apple's rule for every TLS server
/// certificate), and a year is what public CAs issue at most.
const SELF_SIGNED_DAYS: i64 = 365;
/// A self-signed certificate of ours valid longer than this is replaced (earlier versions made
/// ones valid until 4096).
const MAX_VALIDITY_DAYS: i64 = 825;
/// A self-signed certificate this close to its end is renewed (at start and on SIGHUP).
const RENEW_BEFORE_DAYS: i64 = 30;
const DAY: i64 = 86_400;

/// Why the self-signed certificate in `cert` should be made again at `now`, if it should:
/// expired or nearly so, not naming `hostname` (it changed), or valid for too long. A
/// certificate that is not self-signed (one put there by hand) or that we cannot read is kept.
fn renewal_reason(cert: &Path, hostname: &str, now: i64) -> Option<String> {
    let der = CertificateDer::pem_file_iter(cert).ok()?.next()?.ok()?;
    let Some(facts) = CertFacts::parse(der.as_ref()) else {
        tracing::warn!(path = %cert.display(), "cannot read the certificate's validity; keeping it");
        return None;
    };
    if !facts.self_signed {
        return None;
    }
    if facts.not_after - RENEW_BEFORE_DAYS * DAY < now {
        Some("it expires within 30 days".into())
    } else if !facts.names(hostname) {
        Some(format!("it does not name {hostname}"))
    } else if facts.not_after - facts.not_before > MAX_VALIDITY_DAYS * DAY {
        Some("it is valid for more than 825 days, which browsers refuse".into())
    } else {
        None
    }
}

/// Makes a self-signed certificate for `hostname` (its common name, and with `localhost`, its
/// subject alternative names: RFC 6125 §6.4.4, browsers look only there) and a new key.
fn generate(
    dir: &Path,
    hostname: &str,
    cert: &Path,
    key: &Path,
    why: &str,
) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| err("create tls directory", e))?;
    let mut names = vec![hostname.to_string()];
    if !hostname.eq_ignore_ascii_case("localhost") {
        names.push("localhost".into());
    }
    let mut params = rcgen::CertificateParams::new(names)
        .map_err(|e| err("a certificate for this hostname", e))?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CommonName, hostname);
    params.distinguished_name = subject;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let today = common::clock::now().div_euclid(DAY);
    let date = |days: i64| {
        let (year, month, day) = civil_from_days(days);
        rcgen::date_time_ymd(year as i32, month, day)
    };
    // From yesterday, so a client whose clock is a little behind accepts it too.
    params.not_before = date(today - 1);
    params.not_after = date(today - 1 + SELF_SIGNED_DAYS);
    let signing_key = rcgen::KeyPair::generate().map_err(|e| err("generate a key", e))?;
    let generated = params
        .self_signed(&signing_key)
        .map_err(|e| err("generate a self-signed certificate", e))?;
    // The key first, private from the start; then the certificate, whose presence marks success.
    write_private(key, signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, generated.pem()).map_err(|e| err("write certificate", e))?;
    tracing::info!(%hostname, path = %cert.display(), reason = why, "made a self-signed certificate");
    Ok(())
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u8, day as u8)
}

/// What we check in a certificate (RFC 5280 §4.1).
#[derive(Debug)]
struct CertFacts {
    /// Validity, in seconds since 1970.
    not_before: i64,
    not_after: i64,
    /// DNS names of the subject alternative names, lowercase.
    dns: Vec<String>,
    ips: Vec<std::net::IpAddr>,
    /// Issuer and subject are the same name.
    self_signed: bool,
}

const SEQUENCE: u8 = 0x30;
/// `id-ce-subjectAltName` (2.5.29.17), as DER contents.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

impl CertFacts {
    /// Reads a DER certificate; `None` if it is not one. Flat loops, no recursion.
    fn parse(der: &[u8]) -> Option<CertFacts> {
        let certificate = Der(der).expect(SEQUENCE)?;
        let mut tbs = Der(Der(certificate).expect(SEQUENCE)?);
        let (mut tag, _) = tbs.next()?;
        if tag == 0xa0 {
            // [0] version, then the serial number.
            (tag, _) = tbs.next()?;
        }
        if tag != 0x02 {
            return None;
        }
        tbs.expect(SEQUENCE)?; // signature algorithm
        let issuer = tbs.expect(SEQUENCE)?;
        let mut validity = Der(tbs.expect(SEQUENCE)?);
        let not_before = asn1_time(validity.next()?)?;
        let not_after = asn1_time(validity.next()?)?;
        let subject = tbs.expect(SEQUENCE)?;
        tbs.expect(SEQUENCE)?; // subject public key info
        let mut facts = CertFacts {
            not_before,
            not_after,
            dns: Vec::new(),
            ips: Vec::new(),
            self_signed: issuer == subject,
        };
        while let Some((tag, contents)) = tbs.next() {
            if tag != 0xa3 {
                continue; // issuer/subject unique ids
            }
            let mut extensions = Der(Der(contents).expect(SEQUENCE)?);
            while !extensions.0.is_empty() {
                let mut extension = Der(extensions.expect(SEQUENCE)?);
                let id = extension.expect(0x06)?;
                let (mut tag, mut value) = extension.next()?;
                if tag == 0x01 {
                    (tag, value) = extension.next()?; // critical
                }
                if tag != 0x04 || id != SUBJECT_ALT_NAME {
                    continue;
                }
                let mut names = Der(Der(value).expect(SEQUENCE)?);
                while let Some((tag, name)) = names.next() {
                    match (tag, name.len()) {
                        // dNSName [2] and iPAddress [7] (RFC 5280 §4.2.1.6).
                        (0x82, _) => facts
                            .dns
                            .push(String::from_utf8_lossy(name).to_ascii_lowercase()),
                        (0x87, 4) => facts
                            .ips
                            .push(<[u8; 4]>::try_from(name).ok().map(std::net::IpAddr::from)?),
                        (0x87, 16) => facts.ips.push(
                            <[u8; 16]>::try_from(name)
                                .ok()
                                .map(std::net::IpAddr::from)?,
                        ),
                        _ => {}
                    }
                }
            }
        }
        Some(facts)
    }

    /// Whether the certificate is for `hostname`.
    fn names(&self, hostname: &str) -> bool {
        match hostname.parse::<std::net::IpAddr>() {
            Ok(ip) => self.ips.contains(&ip),
            Err(_) => self.dns.iter().any(|d| d.eq_ignore_ascii_case(hostname)),
        }
    }
}

/// A DER reader over a byte slice: each `next` takes one element (tag, contents), lengths
/// checked against what is there.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tags do not occur in certificates
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b))
        };
        if rest.len() < len {
            return None;
        }
        let (contents, after) = rest.split_at(len);
        self.0 = after;
        Some((tag, contents))
    }

    /// The next element's contents if it has `tag`.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        self.next().filter(|(t, _)| *t == tag).map(|(_, c)| c)
    }
}

/// UTCTime or GeneralizedTime as seconds since 1970 (RFC 5280 §4.1.2.5: `Z`, whole seconds).
fn asn1_time((tag, text): (u8, &[u8])) -> Option<i64> {
    let digits = text.strip_suffix(b"Z")?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        digits[range]
            .iter()
            .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'))
    };
    let (year, rest) = match (tag, digits.len()) {
        // RFC 5280 §4.1.2.5.1: YY of 50 and more is 19YY.
        (0x17, 12) => {
            let yy = number(0..2);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 14) => (number(0..4), 4),
        _ => return None,
    };
    let field = |i: usize| number(rest + 2 * i..rest + 2 * i + 2);
    let (month, day) = (field(0), field(1));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * DAY + field(2) * 3600 + field(3) * 60 + field(4))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err("write private key", e))?;
    file.write_all(data)
        .map_err(|e| err("write private key", e))
}

impl Tls {
    /// Loads (or makes) the certificate and builds the acceptor.
    pub fn new(source: CertSource) -> Result<Tls, TlsError> {
        let loaded = load(&source)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(loaded)),
        });
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| err("TLS versions", e))?
                .with_no_client_auth()
                .with_cert_resolver(resolver.clone());
        Ok(Tls {
            source,
            resolver,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the certificate again; new handshakes use it, open connections are untouched.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(&self.source)?;
        *self.resolver.current.write().expect("cert lock poisoned") = Arc::new(loaded);
        Ok(())
    }

    /// The acceptor, for servers outside this crate's driver (the webmail's HTTPS).
    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    pub(crate) fn end_point(&self) -> Vec<u8> {
        self.resolver
            .current
            .read()
            .expect("cert lock poisoned")
            .end_point
            .clone()
    }
}

/// Reads the session facts off an established server connection.
pub(crate) fn info(conn: &rustls::ServerConnection, end_point: Vec<u8>) -> TlsInfo {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let exporter = if version == "TLSv1.3" {
        conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok()
            .map(|k| k.to_vec())
    } else {
        None
    };
    TlsInfo {
        version: version.into(),
        cipher,
        exporter,
        server_end_point: Some(end_point),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(dir: &Path, hostname: &str) -> Tls {
        Tls::new(CertSource::SelfSigned {
            dir: dir.to_path_buf(),
            hostname: hostname.into(),
        })
        .unwrap()
    }

    fn facts(cert: &Path) -> CertFacts {
        let der = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        CertFacts::parse(der.as_ref()).unwrap()
    }

    fn write_pair(dir: &Path, cert: &str, key: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
    }

    #[test]
    fn calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m.into(), d.into()), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        // RFC 5280 §4.1.2.5.1: two-digit years of 50 and more are 19YY.
        assert_eq!(asn1_time((0x17, b"500101000000Z")), Some(-631_152_000));
        assert_eq!(asn1_time((0x17, b"491231235959Z")), Some(2_524_607_999));
        assert_eq!(
            asn1_time((0x18, b"40960101000000Z")),
            Some(days_from_civil(4096, 1, 1) * DAY)
        );
        assert_eq!(asn1_time((0x17, b"5001010000+0Z")), None);
        assert_eq!(asn1_time((0x17, b"501301000000Z")), None);
    }

    #[test]
    fn a_made_certificate_names_the_host_and_lasts_a_year() {
        // Issue 14: it said CN "rcgen self signed cert" and was valid until 4096.
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path(), "mail.example.test");
        let cert = dir.path().join("cert.pem");
        let made = facts(&cert);
        assert!(made.self_signed);
        assert_eq!(made.dns, ["mail.example.test", "localhost"]);
        let now = common::clock::now();
        assert!(
            made.not_before <= now && now - made.not_before <= 2 * DAY,
            "{made:?}"
        );
        assert_eq!(made.not_after - made.not_before, SELF_SIGNED_DAYS * DAY);
        // An independent reader agrees, where there is one.
        let openssl = |args: &[&str]| {
            std::process::Command::new("openssl")
                .args(["x509", "-noout", "-in"])
                .arg(&cert)
                .args(args)
                .output()
        };
        let Ok(text) = openssl(&["-subject", "-ext", "subjectAltName"]) else {
            eprintln!("NOTICE: openssl not found; the certificate is not cross-checked");
            return;
        };
        let text = String::from_utf8_lossy(&text.stdout).replace(' ', "");
        assert!(text.contains("subject=CN=mail.example.test"), "{text}");
        assert!(
            text.contains("DNS:mail.example.test,DNS:localhost"),
            "{text}"
        );
        // Valid a little less than a year from now, not more.
        let days = |n: i64| (n * DAY).to_string();
        assert!(
            openssl(&["-checkend", &days(360)])
                .unwrap()
                .status
                .success()
        );
        assert!(
            !openssl(&["-checkend", &days(366)])
                .unwrap()
                .status
                .success()
        );
    }

    #[test]
    fn old_expired_or_renamed_self_signed_certificates_are_made_again_good_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        // What earlier versions made: rcgen's defaults, valid from 1975 to 4096.
        let old = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        write_pair(
            dir.path(),
            &old.cert.pem(),
            &old.signing_key.serialize_pem(),
        );
        assert!(facts(&cert).not_after >= days_from_civil(4096, 1, 1) * DAY);
        assert!(renewal_reason(&cert, "localhost", common::clock::now()).is_some());
        self_signed(dir.path(), "localhost");
        let renewed = facts(&cert);
        assert_eq!(renewed.dns, ["localhost"]);
        assert_eq!(
            renewed.not_after - renewed.not_before,
            SELF_SIGNED_DAYS * DAY
        );

        // A good one is kept across restarts and SIGHUP: clients that trust it keep working.
        let before = std::fs::read(&cert).unwrap();
        self_signed(dir.path(), "localhost").reload().unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), before);
        // Near its end (as seen 340 days on) it would be renewed.
        let later = common::clock::now() + 340 * DAY;
        assert!(renewal_reason(&cert, "localhost", later).is_some());

        // A new hostname gets a new certificate.
        self_signed(dir.path(), "mx.example.test");
        assert_eq!(facts(&cert).dns, ["mx.example.test", "localhost"]);

        // So does an expired one.
        let mut params = rcgen::CertificateParams::new(vec!["mx.example.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let expired = params.self_signed(&key).unwrap();
        write_pair(dir.path(), &expired.pem(), &key.serialize_pem());
        self_signed(dir.path(), "mx.example.test");
        assert!(facts(&cert).not_after > common::clock::now());
    }

    #[test]
    fn certificates_not_made_here_are_used_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        // Configured files are the operator's, however long they last.
        let long = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let own = dir.path().join("own");
        write_pair(&own, &long.cert.pem(), &long.signing_key.serialize_pem());
        Tls::new(CertSource::Files {
            cert: own.join("cert.pem"),
            key: own.join("key.pem"),
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(own.join("cert.pem")).unwrap(),
            long.cert.pem()
        );

        // A CA-signed certificate put in the data directory by hand is kept, even for
        // another name.
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Test CA");
        let issuer = rcgen::Issuer::new(ca, rcgen::KeyPair::generate().unwrap());
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["other.example".into()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let data = dir.path().join("tls");
        write_pair(&data, &leaf.pem(), &key.serialize_pem());
        assert!(!facts(&data.join("cert.pem")).self_signed);
        self_signed(&data, "localhost");
        assert_eq!(
            std::fs::read_to_string(data.join("cert.pem")).unwrap(),
            leaf.pem()
        );
    }
}

//! Server side of SASL exchanges, protocol-neutral: the protocol decodes its base64 framing
//! (SMTP `334`, IMAP `+`, POP3 `+`) and passes raw bytes in; it encodes the challenges out.
//!
//! Call contract: [`ServerExchange::start`] with the initial response (if the client sent one,
//! SASL-IR), then [`ServerExchange::step`] with each client response until an [`Outcome`] other
//! than `Challenge` comes out. `CheckPassword` and `NeedScramKeys` are questions for the caller,
//! answered with [`ServerExchange::password_checked`] and [`ServerExchange::scram_keys`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::scram::{ScramKeys, hmac_sha256, sha256};

/// Mechanisms we offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    ScramSha256,
    ScramSha256Plus,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
        }
    }

    pub fn parse(name: &str) -> Option<Mechanism> {
        [
            Mechanism::Plain,
            Mechanism::Login,
            Mechanism::ScramSha256,
            Mechanism::ScramSha256Plus,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// Channel-binding data of the TLS connection (RFC 5929, RFC 9266).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelBindings {
    /// `tls-exporter` (RFC 9266), TLS 1.3.
    pub tls_exporter: Option<Vec<u8>>,
    /// `tls-server-end-point` (RFC 5929): hash of our certificate.
    pub tls_server_end_point: Option<Vec<u8>>,
}

/// What the exchange needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send this challenge (raw bytes; the protocol base64-encodes it).
    Challenge(Vec<u8>),
    /// PLAIN/LOGIN: check this password for `username`, then call `password_checked`.
    CheckPassword {
        authzid: Option<String>,
        username: String,
        password: String,
    },
    /// SCRAM: look up the stored keys of `username`, then call `scram_keys`.
    NeedScramKeys { username: String },
    /// Authenticated. `final_data` must go to the client with the success reply (SCRAM's
    /// server signature), if the protocol can carry it, or as a last challenge otherwise.
    Success {
        username: String,
        final_data: Option<Vec<u8>>,
    },
    /// The client gave wrong credentials (a protocol answers 535 / NO [AUTHENTICATIONFAILED]).
    Failure,
    /// The client's messages are malformed (a protocol answers 501 / BAD).
    Malformed(&'static str),
}

#[derive(Debug)]
enum State {
    Start,
    LoginUser,
    LoginPassword { username: String },
    AwaitPassword { username: String },
    ScramFirst,
    AwaitKeys(ScramPending),
    ScramFinal(ScramPending, Option<ScramKeys>),
    Done,
}

#[derive(Debug)]
struct ScramPending {
    username: String,
    gs2_header: String,
    binding: Option<Vec<u8>>,
    client_first_bare: String,
    nonce: String,
    server_first: String,
}

/// One SASL exchange on the server.
#[derive(Debug)]
pub struct ServerExchange {
    mechanism: Mechanism,
    bindings: ChannelBindings,
    /// True when we advertised the -PLUS variant (so a client saying "y" is being downgraded).
    plus_offered: bool,
    server_nonce: String,
    state: State,
    /// Keys the made-up salt of an unknown user (see [`ServerExchange::set_decoy_key`]).
    decoy_key: [u8; 32],
}

fn utf8(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

/// Whether an authorization identity names the authenticated user: the same name, ignoring
/// case (addresses are case-insensitive here, as everywhere in pigeon).
fn same_identity(authzid: &str, username: &str) -> bool {
    authzid == username || authzid.to_lowercase() == username.to_lowercase()
}

/// RFC 5802 §5.1 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('=') {
        out.push_str(&rest[..pos]);
        let code = rest.get(pos + 1..pos + 3)?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    Some(out)
}

impl ServerExchange {
    /// A new exchange. `nonce` must be fresh random bytes (at least 18); `plus_offered` says
    /// whether SCRAM-SHA-256-PLUS was advertised on this connection.
    pub fn new(
        mechanism: Mechanism,
        bindings: ChannelBindings,
        plus_offered: bool,
        nonce: &[u8],
    ) -> ServerExchange {
        ServerExchange {
            mechanism,
            bindings,
            plus_offered,
            server_nonce: base64::engine::general_purpose::STANDARD_NO_PAD.encode(nonce),
            state: State::Start,
            decoy_key: [0; 32],
        }
    }

    /// The secret an unknown user's made-up salt is derived with. Without one the salt would
    /// be a public function of the name, and a client could tell "no such user" by computing
    /// it; with a server secret it looks like any stored salt.
    pub fn set_decoy_key(&mut self, key: [u8; 32]) {
        self.decoy_key = key;
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Begins the exchange; `initial` is the client's initial response if it sent one.
    pub fn start(&mut self, initial: Option<&[u8]>) -> Outcome {
        match (self.mechanism, initial) {
            (Mechanism::Login, None) => {
                self.state = State::LoginUser;
                Outcome::Challenge(b"Username:".to_vec())
            }
            (Mechanism::Login, Some(user)) => {
                self.state = State::LoginUser;
                self.step(user)
            }
            (Mechanism::Plain, None) => Outcome::Challenge(Vec::new()),
            (Mechanism::ScramSha256 | Mechanism::ScramSha256Plus, None) => {
                self.state = State::ScramFirst;
                Outcome::Challenge(Vec::new())
            }
            (_, Some(data)) => self.step(data),
        }
    }

    /// Feeds the client's next response.
    pub fn step(&mut self, data: &[u8]) -> Outcome {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start if self.mechanism == Mechanism::Plain => self.plain(data),
            State::Start | State::ScramFirst => self.scram_first(data),
            State::LoginUser => match utf8(data) {
                Some(username) if !username.is_empty() => {
                    self.state = State::LoginPassword { username };
                    Outcome::Challenge(b"Password:".to_vec())
                }
                _ => Outcome::Malformed("bad user name"),
            },
            State::LoginPassword { username } => match utf8(data) {
                Some(password) => {
                    self.state = State::AwaitPassword {
                        username: username.clone(),
                    };
                    Outcome::CheckPassword {
                        authzid: None,
                        username,
                        password,
                    }
                }
                None => Outcome::Malformed("password is not UTF-8"),
            },
            State::ScramFinal(pending, keys) => self.scram_final(pending, keys, data),
            State::AwaitPassword { .. } | State::AwaitKeys(_) | State::Done => {
                Outcome::Malformed("unexpected response")
            }
        }
    }

    /// RFC 4616: `[authzid] NUL authcid NUL passwd`.
    fn plain(&mut self, data: &[u8]) -> Outcome {
        let parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
        let [authzid, authcid, password] = parts[..] else {
            return Outcome::Malformed("PLAIN needs authzid NUL authcid NUL password");
        };
        let (Some(authzid), Some(username), Some(password)) =
            (utf8(authzid), utf8(authcid), utf8(password))
        else {
            return Outcome::Malformed("PLAIN fields must be UTF-8");
        };
        if username.is_empty() {
            return Outcome::Malformed("empty user name");
        }
        if !authzid.is_empty() && !same_identity(&authzid, &username) {
            // RFC 4616 §2: the server must check that the credentials permit acting as the
            // authzid. We have no proxy authorisation, so only the user themself qualifies;
            // anything else fails before the password is checked.
            return Outcome::Failure;
        }
        self.state = State::AwaitPassword {
            username: username.clone(),
        };
        Outcome::CheckPassword {
            authzid: (!authzid.is_empty()).then_some(authzid),
            username,
            password,
        }
    }

    /// The answer to `CheckPassword`.
    pub fn password_checked(&mut self, ok: bool) -> Outcome {
        match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitPassword { username } if ok => Outcome::Success {
                username,
                final_data: None,
            },
            State::AwaitPassword { .. } => Outcome::Failure,
            _ => Outcome::Malformed("no password check was pending"),
        }
    }

    fn scram_first(&mut self, data: &[u8]) -> Outcome {
        let Some(text) = utf8(data) else {
            return Outcome::Malformed("SCRAM message is not UTF-8");
        };
        // gs2-header = gs2-cbind-flag "," [authzid] ","
        let mut parts = text.splitn(3, ',');
        let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Outcome::Malformed("bad SCRAM client-first message");
        };
        if !authzid.is_empty() && !authzid.starts_with("a=") {
            return Outcome::Malformed("bad SCRAM authzid");
        }
        let binding = match (self.mechanism, flag) {
            (Mechanism::ScramSha256Plus, "p=tls-exporter") => match &self.bindings.tls_exporter {
                Some(b) => Some(b.clone()),
                None => return Outcome::Malformed("channel binding tls-exporter unavailable"),
            },
            (Mechanism::ScramSha256Plus, "p=tls-server-end-point") => match &self
                .bindings
                .tls_server_end_point
            {
                Some(b) => Some(b.clone()),
                None => {
                    return Outcome::Malformed("channel binding tls-server-end-point unavailable");
                }
            },
            (Mechanism::ScramSha256Plus, _) => {
                return Outcome::Malformed("SCRAM-SHA-256-PLUS needs a supported channel binding");
            }
            (_, "n") => None,
            // RFC 5802 §6: "y" means the client could bind but thinks we can't; if we offered
            // PLUS, someone stripped it from the list.
            (_, "y") if self.plus_offered => return Outcome::Failure,
            (_, "y") => None,
            _ => return Outcome::Malformed("bad SCRAM channel binding flag"),
        };
        let mut username = None;
        let mut client_nonce = None;
        for attribute in bare.split(',') {
            if let Some(v) = attribute.strip_prefix("n=") {
                username = decode_saslname(v);
            } else if let Some(v) = attribute.strip_prefix("r=") {
                client_nonce = Some(v.to_string());
            } else if attribute.starts_with("m=") {
                return Outcome::Malformed("SCRAM mandatory extensions are not supported");
            }
        }
        let (Some(username), Some(client_nonce)) = (username, client_nonce) else {
            return Outcome::Malformed("SCRAM client-first needs n= and r=");
        };
        if username.is_empty() || client_nonce.is_empty() {
            return Outcome::Malformed("empty SCRAM user name or nonce");
        }
        if let Some(authzid) = authzid.strip_prefix("a=") {
            let Some(authzid) = decode_saslname(authzid) else {
                return Outcome::Malformed("bad SCRAM authzid");
            };
            // RFC 5802 §5.1: the authzid is an identity to act as; we allow only the user's own
            // (no proxy authorisation), as for PLAIN (RFC 4616 §2).
            if !same_identity(&authzid, &username) {
                return Outcome::Failure;
            }
        }
        self.state = State::AwaitKeys(ScramPending {
            username: username.clone(),
            gs2_header: format!("{flag},{authzid},"),
            binding,
            client_first_bare: bare.to_string(),
            nonce: format!("{client_nonce}{}", self.server_nonce),
            server_first: String::new(),
        });
        Outcome::NeedScramKeys { username }
    }

    /// The answer to `NeedScramKeys`: the user's keys, or `None` if there is no such user (the
    /// exchange then continues with made-up keys and fails at the end, so it does not reveal
    /// which users exist).
    pub fn scram_keys(&mut self, keys: Option<ScramKeys>) -> Outcome {
        let State::AwaitKeys(mut pending) = std::mem::replace(&mut self.state, State::Done) else {
            return Outcome::Malformed("no key lookup was pending");
        };
        let (salt, iterations) = match &keys {
            Some(k) => (k.salt.clone(), k.iterations),
            None => (
                hmac_sha256(&self.decoy_key, pending.username.as_bytes())[..16].to_vec(),
                crate::scram::DEFAULT_ITERATIONS,
            ),
        };
        pending.server_first =
            format!("r={},s={},i={iterations}", pending.nonce, B64.encode(&salt));
        let challenge = pending.server_first.clone().into_bytes();
        self.state = State::ScramFinal(pending, keys);
        Outcome::Challenge(challenge)
    }

    fn scram_final(
        &mut self,
        pending: ScramPending,
        keys: Option<ScramKeys>,
        data: &[u8],
    ) -> Outcome {
        let Some(text) = utf8(data) else {
            return Outcome::Malformed("SCRAM message is not UTF-8");
        };
        let Some((without_proof, proof)) = text.rsplit_once(",p=") else {
            return Outcome::Malformed("SCRAM client-final needs p=");
        };
        let mut channel = None;
        let mut nonce = None;
        for attribute in without_proof.split(',') {
            if let Some(v) = attribute.strip_prefix("c=") {
                channel = Some(v);
            } else if let Some(v) = attribute.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        let Some(Ok(proof)) = Some(B64.decode(proof)) else {
            return Outcome::Malformed("bad SCRAM proof encoding");
        };
        if nonce != Some(pending.nonce.as_str()) {
            return Outcome::Failure;
        }
        let mut expected_channel = pending.gs2_header.clone().into_bytes();
        if let Some(binding) = &pending.binding {
            expected_channel.extend_from_slice(binding);
        }
        if channel != Some(B64.encode(&expected_channel).as_str()) {
            return Outcome::Failure;
        }
        let Some(keys) = keys else {
            return Outcome::Failure;
        };
        let auth_message = format!(
            "{},{},{without_proof}",
            pending.client_first_bare, pending.server_first
        );
        let signature = hmac_sha256(&keys.stored_key, auth_message.as_bytes());
        if proof.len() != 32 {
            return Outcome::Failure;
        }
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ signature[i];
        }
        // Constant-time comparison of H(ClientKey) with StoredKey.
        let matches = sha256(&client_key)
            .iter()
            .zip(keys.stored_key.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if !matches {
            return Outcome::Failure;
        }
        let server_signature = hmac_sha256(&keys.server_key, auth_message.as_bytes());
        Outcome::Success {
            username: pending.username,
            final_data: Some(format!("v={}", B64.encode(server_signature)).into_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(data: &[u8]) -> Outcome {
        let mut ex = ServerExchange::new(
            Mechanism::Plain,
            ChannelBindings::default(),
            false,
            b"nonce-nonce-nonce!",
        );
        ex.start(Some(data))
    }

    #[test]
    fn plain_rfc4616() {
        assert_eq!(
            plain(b"\0tim\0tanstaaftanstaaf"),
            Outcome::CheckPassword {
                authzid: None,
                username: "tim".into(),
                password: "tanstaaftanstaaf".into()
            }
        );
        // RFC 4616 §4's second example: Kurt authorizing as Ursel. Without proxy
        // authorisation that fails (§2), and before the password is checked.
        assert_eq!(plain(b"Ursel\0Kurt\0xipj3plmq"), Outcome::Failure);
        // The user's own name as authzid (any case) is the same as none.
        assert!(
            matches!(plain(b"Kurt@Example.org\0kurt@example.org\0pw"), Outcome::CheckPassword { authzid: Some(a), username, .. } if a == "Kurt@Example.org" && username == "kurt@example.org")
        );
        assert!(matches!(plain(b"no nuls"), Outcome::Malformed(_)));
        assert!(matches!(plain(b"\0\0pw"), Outcome::Malformed(_)));
        let mut ex = ServerExchange::new(Mechanism::Plain, ChannelBindings::default(), false, b"n");
        assert_eq!(ex.start(None), Outcome::Challenge(Vec::new()));
        assert!(matches!(ex.step(b"\0u\0p"), Outcome::CheckPassword { .. }));
        assert!(
            matches!(ex.password_checked(true), Outcome::Success { username, .. } if username == "u")
        );
        let mut ex = ServerExchange::new(Mechanism::Plain, ChannelBindings::default(), false, b"n");
        ex.start(Some(b"\0u\0p"));
        assert_eq!(ex.password_checked(false), Outcome::Failure);
    }

    #[test]
    fn login() {
        let mut ex = ServerExchange::new(Mechanism::Login, ChannelBindings::default(), false, b"n");
        assert_eq!(ex.start(None), Outcome::Challenge(b"Username:".to_vec()));
        assert_eq!(ex.step(b"bob"), Outcome::Challenge(b"Password:".to_vec()));
        assert!(
            matches!(ex.step(b"pw"), Outcome::CheckPassword { username, password, .. } if username == "bob" && password == "pw")
        );
        assert!(matches!(ex.password_checked(true), Outcome::Success { .. }));
    }

    /// RFC 7677 §3: the SCRAM-SHA-256 example exchange, byte for byte.
    #[test]
    fn scram_sha256_rfc7677_vector() {
        let client_nonce = "rOprNGfwEbeRWgbNEkqO";
        let server_nonce_tail = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = ScramKeys::derive("pencil", &salt, 4096);
        let mut ex = ServerExchange::new(
            Mechanism::ScramSha256,
            ChannelBindings::default(),
            false,
            b"",
        );
        // The RFC's server nonce is not base64 of anything; set it directly.
        ex.server_nonce = server_nonce_tail.to_string();
        assert_eq!(
            ex.start(Some(format!("n,,n=user,r={client_nonce}").as_bytes())),
            Outcome::NeedScramKeys {
                username: "user".into()
            }
        );
        assert_eq!(
            ex.scram_keys(Some(keys)),
            Outcome::Challenge(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".to_vec()
            )
        );
        let outcome = ex.step(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        );
        assert_eq!(
            outcome,
            Outcome::Success {
                username: "user".into(),
                final_data: Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec())
            }
        );
    }

    fn scram_run(
        password: &str,
        stored: Option<ScramKeys>,
        bindings: ChannelBindings,
        mech: Mechanism,
        flag: &str,
        cbind: &[u8],
    ) -> Outcome {
        let mut ex = ServerExchange::new(mech, bindings, true, b"0123456789abcdefgh");
        let first_bare = "n=alice,r=clientnonce";
        let gs2 = format!("{flag},,");
        match ex.start(Some(format!("{gs2}{first_bare}").as_bytes())) {
            Outcome::NeedScramKeys { .. } => {}
            other => return other,
        }
        let Outcome::Challenge(server_first) = ex.scram_keys(stored) else {
            panic!()
        };
        let server_first = String::from_utf8(server_first).unwrap();
        let nonce = server_first
            .split(',')
            .next()
            .unwrap()
            .strip_prefix("r=")
            .unwrap();
        let salt = B64
            .decode(
                server_first
                    .split(',')
                    .nth(1)
                    .unwrap()
                    .strip_prefix("s=")
                    .unwrap(),
            )
            .unwrap();
        let channel = B64.encode([gs2.as_bytes(), cbind].concat());
        let without_proof = format!("c={channel},r={nonce}");
        let auth_message = format!("{first_bare},{server_first},{without_proof}");
        let (proof, _) = crate::scram::client_proof(password, &salt, 4096, auth_message.as_bytes());
        ex.step(format!("{without_proof},p={}", B64.encode(proof)).as_bytes())
    }

    /// Issue 14 (finding 6): an unknown user's salt is keyed by a server secret, so a client
    /// cannot compute it from the name and learn that the user does not exist.
    #[test]
    fn unknown_users_get_a_salt_only_the_server_can_compute() {
        let salt_for = |key: [u8; 32], user: &str| {
            let mut ex = ServerExchange::new(
                Mechanism::ScramSha256,
                ChannelBindings::default(),
                false,
                b"server-nonce-bytes",
            );
            let first = format!("n,,n={user},r=clientnonce");
            assert!(matches!(
                ex.start(Some(first.as_bytes())),
                Outcome::NeedScramKeys { .. }
            ));
            ex.set_decoy_key(key);
            let Outcome::Challenge(challenge) = ex.scram_keys(None) else {
                panic!("no challenge");
            };
            let text = String::from_utf8(challenge).unwrap();
            text.split(',')
                .find_map(|f| f.strip_prefix("s="))
                .unwrap()
                .to_string()
        };
        let public = B64.encode(&sha256(b"nobody@x.test")[..16]);
        let a = salt_for([1; 32], "nobody@x.test");
        assert_eq!(a, salt_for([1; 32], "nobody@x.test"), "stable for a name");
        assert_ne!(
            a,
            salt_for([2; 32], "nobody@x.test"),
            "depends on the secret"
        );
        assert_ne!(a, salt_for([1; 32], "other@x.test"), "depends on the name");
        assert_ne!(a, public);
    }

    #[test]
    fn scram_success_failure_unknown_user_and_binding() {
        let keys = ScramKeys::derive("secret", b"salt-salt-salt!!", 4096);
        let none = ChannelBindings::default();
        assert!(matches!(
            scram_run(
                "secret",
                Some(keys.clone()),
                none.clone(),
                Mechanism::ScramSha256,
                "n",
                b""
            ),
            Outcome::Success { .. }
        ));
        assert_eq!(
            scram_run(
                "wrong",
                Some(keys.clone()),
                none.clone(),
                Mechanism::ScramSha256,
                "n",
                b""
            ),
            Outcome::Failure
        );
        assert_eq!(
            scram_run(
                "secret",
                None,
                none.clone(),
                Mechanism::ScramSha256,
                "n",
                b""
            ),
            Outcome::Failure
        );
        // "y" while PLUS was offered: a downgrade.
        assert_eq!(
            scram_run(
                "secret",
                Some(keys.clone()),
                none.clone(),
                Mechanism::ScramSha256,
                "y",
                b""
            ),
            Outcome::Failure
        );

        let bound = ChannelBindings {
            tls_exporter: Some(b"exporter-bytes".to_vec()),
            tls_server_end_point: Some(b"cert-hash".to_vec()),
        };
        assert!(matches!(
            scram_run(
                "secret",
                Some(keys.clone()),
                bound.clone(),
                Mechanism::ScramSha256Plus,
                "p=tls-exporter",
                b"exporter-bytes"
            ),
            Outcome::Success { .. }
        ));
        assert!(matches!(
            scram_run(
                "secret",
                Some(keys.clone()),
                bound.clone(),
                Mechanism::ScramSha256Plus,
                "p=tls-server-end-point",
                b"cert-hash"
            ),
            Outcome::Success { .. }
        ));
        // The client's channel is another one (a man in the middle): fails.
        assert_eq!(
            scram_run(
                "secret",
                Some(keys.clone()),
                bound.clone(),
                Mechanism::ScramSha256Plus,
                "p=tls-exporter",
                b"other-channel"
            ),
            Outcome::Failure
        );
        assert!(matches!(
            scram_run(
                "secret",
                Some(keys),
                bound,
                Mechanism::ScramSha256Plus,
                "n",
                b""
            ),
            Outcome::Malformed(_)
        ));
    }

    /// RFC 5802 §5.1 gs2-header authzid: only the user's own identity is accepted.
    #[test]
    fn scram_foreign_authzid_fails() {
        let start = |first: &[u8]| {
            let mut ex = ServerExchange::new(
                Mechanism::ScramSha256,
                ChannelBindings::default(),
                false,
                b"0123456789abcdefgh",
            );
            ex.start(Some(first))
        };
        assert_eq!(start(b"n,a=admin,n=alice,r=abc"), Outcome::Failure);
        assert_eq!(
            start(b"n,a=Alice,n=alice,r=abc"),
            Outcome::NeedScramKeys {
                username: "alice".into()
            }
        );
        assert_eq!(
            start(b"n,a=a=2Cb,n=a=2Cb,r=abc"),
            Outcome::NeedScramKeys {
                username: "a,b".into()
            }
        );
        assert!(matches!(
            start(b"n,a=bad=41,n=alice,r=abc"),
            Outcome::Malformed(_)
        ));
    }

    #[test]
    fn saslname_escapes() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_saslname("bad=41"), None);
    }
}

//! DKIM (RFC 6376) for our users' mail: keys made by `pigeon domain add` (Ed25519, and
//! RSA-2048 whose public key is wrapped as SubjectPublicKeyInfo for DNS), their TXT records, and
//! the signatures a submitted message gets from every key of its `From:` domain; on mail-auth.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mail_auth::common::crypto::{DkimKey as SigningKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::dkim::generate::DkimKeyPair;
use rustls_pki_types::PrivateKeyDer;
use store::DkimKey;

/// Headers we sign (RFC 6376 §5.4.1's recommendation, minus those nobody sets).
const SIGNED_HEADERS: [&str; 12] = [
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// Makes a new signing key for `domain`: `algorithm` is `ed25519` or `rsa` (2048 bits).
pub fn generate_key(
    domain: &str,
    selector: &str,
    algorithm: &str,
    now: i64,
) -> Result<DkimKey, String> {
    let (private_key, public_key) = match algorithm {
        "ed25519" => {
            let (private, public) = DkimKeyPair::generate_ed25519()
                .map_err(|e| e.to_string())?
                .into_inner();
            (private, B64.encode(public))
        }
        "rsa" => {
            let (private, public) = DkimKeyPair::generate_rsa(2048)
                .map_err(|e| e.to_string())?
                .into_inner();
            (private, B64.encode(rsa_spki(&public)))
        }
        other => return Err(format!("unknown DKIM algorithm {other:?}")),
    };
    Ok(DkimKey {
        domain: domain.to_lowercase(),
        selector: selector.to_string(),
        algorithm: algorithm.to_string(),
        private_key,
        public_key,
        created: now,
    })
}

/// The TXT record to publish at `<selector>._domainkey.<domain>`.
pub fn dns_record(key: &DkimKey) -> String {
    let k = if key.algorithm == "ed25519" {
        "ed25519"
    } else {
        "rsa"
    };
    format!("v=DKIM1; k={k}; p={}", key.public_key)
}

/// A PKCS#1 RSAPublicKey wrapped as SubjectPublicKeyInfo, the form DNS records carry.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    fn len(out: &mut Vec<u8>, n: usize) {
        match n {
            0..=0x7f => out.push(n as u8),
            0x80..=0xff => out.extend([0x81, n as u8]),
            _ => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
    }
    // AlgorithmIdentifier: rsaEncryption with NULL parameters.
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0x03];
    len(&mut bits, pkcs1.len() + 1);
    bits.push(0);
    bits.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    len(&mut out, ALGORITHM.len() + bits.len());
    out.extend_from_slice(&ALGORITHM);
    out.extend_from_slice(&bits);
    out
}

/// The stored key (PKCS#8 Ed25519, or RSA DER in either form) ready to sign.
fn signing_key(key: &DkimKey) -> Result<SigningKey, String> {
    if key.algorithm == "ed25519" {
        return Ed25519Key::from_pkcs8_der(&key.private_key)
            .map(Into::into)
            .map_err(|e| e.to_string());
    }
    let der = PrivateKeyDer::try_from(key.private_key.as_slice()).map_err(str::to_string)?;
    RsaKey::<Sha256>::from_key_der(der)
        .map(Into::into)
        .map_err(|e| e.to_string())
}

/// `DKIM-Signature:` headers (one per key) for `message`, to put in front of it.
pub fn sign(keys: &[DkimKey], message: &[u8]) -> Vec<u8> {
    let mut headers = Vec::new();
    for key in keys {
        let signing_key = match signing_key(key) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(domain = %key.domain, selector = %key.selector, error = %e, "bad DKIM key");
                continue;
            }
        };
        let signed = DkimSigner::from_key(signing_key)
            .domain(key.domain.as_str())
            .selector(key.selector.as_str())
            .headers(SIGNED_HEADERS)
            .sign(message);
        match signed {
            Ok(signature) => headers.extend_from_slice(signature.to_header().as_bytes()),
            Err(e) => tracing::warn!(domain = %key.domain, error = %e, "DKIM signing failed"),
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_publish() {
        for algorithm in ["ed25519", "rsa"] {
            let key = generate_key("a.test", "s1", algorithm, 0).unwrap();
            assert!(dns_record(&key).starts_with(&format!("v=DKIM1; k={algorithm}; p=")));
            let headers = sign(
                std::slice::from_ref(&key),
                b"From: a@a.test\r\nTo: b@b.test\r\nSubject: hi\r\n\r\nbody\r\n",
            );
            let text = String::from_utf8(headers).unwrap();
            assert!(text.starts_with("DKIM-Signature: "), "{text}");
            assert!(text.contains("d=a.test"), "{text}");
            assert!(text.contains("s=s1"), "{text}");
            assert!(text.ends_with("\r\n"));
        }
    }
}

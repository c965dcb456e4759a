//! Mail authentication of mail from other servers: SPF, DKIM and DMARC checks, on mail-auth.
//! Signing our users' mail, and the keys, are the submission policy's ([`submission::dkim`]).

use std::net::IpAddr;

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DmarcResult, MessageAuthenticator};

/// The verdict on a message from another server.
pub struct Verdict {
    /// The `Authentication-Results:` header (RFC 8601), CRLF-terminated.
    pub header: String,
    /// The sender's domain publishes DMARC `p=reject` and the message fails it.
    pub dmarc_reject: bool,
}

/// Checks SPF (HELO and MAIL FROM), DKIM and DMARC.
pub async fn verify(
    authenticator: &MessageAuthenticator,
    message: &[u8],
    ip: IpAddr,
    helo: &str,
    mail_from: &str,
    hostname: &str,
) -> Verdict {
    let spf_helo = authenticator
        .verify_spf(SpfParameters::verify_ehlo(ip, helo, hostname))
        .await;
    let spf_from = authenticator
        .verify_spf(SpfParameters::verify_mail_from(
            ip, helo, hostname, mail_from,
        ))
        .await;
    let Some(parsed) = AuthenticatedMessage::parse(message) else {
        let header = AuthenticationResults::new(hostname)
            .with_spf_ehlo_result(&spf_helo, ip, helo)
            .with_spf_mailfrom_result(&spf_from, ip, mail_from, helo)
            .to_header();
        return Verdict {
            header,
            dmarc_reject: false,
        };
    };
    let dkim = authenticator.verify_dkim(&parsed).await;
    let from_domain = mail_from.rsplit_once('@').map_or(helo, |(_, d)| d);
    let dmarc = authenticator
        .verify_dmarc(DmarcParameters::new(&parsed, &dkim, from_domain, &spf_from))
        .await;
    let header = AuthenticationResults::new(hostname)
        .with_dkim_results(&dkim, parsed.from())
        .with_spf_ehlo_result(&spf_helo, ip, helo)
        .with_spf_mailfrom_result(&spf_from, ip, mail_from, helo)
        .with_dmarc_result(&dmarc)
        .to_header();
    Verdict {
        header,
        dmarc_reject: dmarc.policy() == Policy::Reject
            && matches!(dmarc.result(), DmarcResult::Fail(_)),
    }
}

//! ENABLE (RFC 5161): IMAP4rev2, UTF8=ACCEPT (RFC 6855), CONDSTORE and QRESYNC (RFC 7162).

use super::Ctx;
use crate::reply::{Completed, ok};
use crate::state::Account;

pub(crate) fn enable(cx: &mut Ctx<'_>, account: &mut Account, caps: &[String]) -> Completed {
    let on = &mut account.enabled;
    let mut enabled = Vec::new();
    for cap in caps {
        match cap.as_str() {
            "IMAP4REV2" if !on.rev2 => {
                on.rev2 = true;
                on.utf8 = true;
                enabled.push("IMAP4rev2");
            }
            "UTF8=ACCEPT" if !on.utf8 => {
                on.utf8 = true;
                enabled.push("UTF8=ACCEPT");
            }
            "QRESYNC" if !on.qresync => {
                // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                on.qresync = true;
                on.condstore = true;
                enabled.push("QRESYNC");
            }
            "CONDSTORE" if !on.condstore => {
                on.condstore = true;
                enabled.push("CONDSTORE");
            }
            _ => {}
        }
    }
    let line = format!("* ENABLED {}\r\n", enabled.join(" "));
    cx.out()
        .extend_from_slice(line.replace("ENABLED \r\n", "ENABLED\r\n").as_bytes());
    ok("ENABLE completed")
}

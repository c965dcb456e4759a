//! Commands of any state: NOOP and CHECK (answered in the dispatcher), ID (RFC 2971) and
//! LOGOUT. CAPABILITY is in [`auth`](super::auth), as its answer depends on the login.

use net::Flow;

use crate::Session;
use crate::reply::{Completed, ok};
use crate::state::{State, Verb};

/// ID (RFC 2971): our name, whatever the client told us.
pub(crate) fn id(out: &mut Vec<u8>) -> Completed {
    out.extend_from_slice(b"* ID (\"name\" \"pigeon\")\r\n");
    ok("ID completed")
}

impl Session {
    /// LOGOUT: BYE, the completion, and nothing more is read.
    pub(crate) fn logout(&mut self, tag: &str) -> Flow {
        self.machine
            .out()
            .extend_from_slice(b"* BYE pigeon IMAP server logging out\r\n");
        self.complete(tag, Verb::Logout, Ok(ok("LOGOUT completed")));
        self.machine.close();
        self.state = State::Logout;
        Flow::Close
    }
}

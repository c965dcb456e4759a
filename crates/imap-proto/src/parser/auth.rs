//! LOGIN (RFC 9051 §6.2.3) and AUTHENTICATE (RFC 9051 §6.2.2, SASL-IR RFC 4959).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::{Args, ParseError};
use crate::command::CommandBody;
use crate::token::Token;

pub(super) fn authenticate(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    let mechanism = args.atom("mechanism")?.to_ascii_uppercase();
    let initial = match args.next() {
        None => None,
        Some(Token::Atom(a)) if a == "=" => Some(Vec::new()),
        Some(t) => {
            let text = t
                .as_astring()
                .ok_or_else(|| ParseError("bad initial response".into()))?;
            Some(
                B64.decode(text)
                    .map_err(|_| ParseError("initial response is not base64".into()))?,
            )
        }
    };
    Ok(CommandBody::Authenticate { mechanism, initial })
}

pub(super) fn login(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Login {
        user: args.astring("user name")?,
        password: args.astring("password")?,
    })
}

#[cfg(test)]
mod tests {
    use crate::parser::tests::p;

    #[test]
    fn login() {
        assert!(p("LOGIN", "a").is_err());
    }
}

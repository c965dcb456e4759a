//! STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3).

use super::{Args, ParseError, err};
use crate::command::{CommandBody, StoreMode};
use crate::token::Token;

pub(super) fn store(args: &mut Args, uid: bool) -> Result<CommandBody, ParseError> {
    let set = args.set()?;
    let mut next = args.next();
    let mut unchanged_since = None;
    if let Some(Token::List(modifiers)) = &next {
        match &modifiers[..] {
            [Token::Atom(a), Token::Atom(v)] if a.eq_ignore_ascii_case("UNCHANGEDSINCE") => {
                unchanged_since = Some(
                    v.parse()
                        .map_err(|_| ParseError("bad UNCHANGEDSINCE".into()))?,
                );
            }
            _ => return err("unsupported STORE modifier"),
        }
        next = args.next();
    }
    let Some(Token::Atom(action)) = next else {
        return err("STORE needs FLAGS, +FLAGS or -FLAGS");
    };
    let action = action.to_ascii_uppercase();
    let (mode, rest) = match action.as_bytes().first() {
        Some(b'+') => (StoreMode::Add, &action[1..]),
        Some(b'-') => (StoreMode::Remove, &action[1..]),
        _ => (StoreMode::Replace, &action[..]),
    };
    let silent = match rest {
        "FLAGS" => false,
        "FLAGS.SILENT" => true,
        _ => return err("STORE needs FLAGS, +FLAGS or -FLAGS"),
    };
    let mut flags = Vec::new();
    for t in args.tokens.by_ref() {
        match t {
            Token::List(list) => flags.extend(list.iter().filter_map(Token::as_astring)),
            Token::Atom(a) => flags.push(a),
            _ => return err("bad flag"),
        }
    }
    Ok(CommandBody::Store {
        uid,
        set,
        mode,
        silent,
        flags,
        unchanged_since,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::tests::p;

    #[test]
    fn store() {
        assert!(
            matches!(p("STORE", "1:2 +FLAGS.SILENT (\\Seen $Junk)").unwrap(), CommandBody::Store { mode: StoreMode::Add, silent: true, ref flags, .. } if flags.len() == 2)
        );
    }
}

//! SEARCH (RFC 9051 §6.4.4) with ESEARCH return options (RFC 4731, RFC 5182), WITHIN
//! (RFC 5032) and MODSEQ (RFC 7162).

use super::{Args, ParseError, err, parse_date};
use crate::command::{CommandBody, SearchKey, SearchReturn, SequenceSet};
use crate::token::{MAX_DEPTH, Token};

pub(super) fn search(args: &mut Args, uid: bool) -> Result<CommandBody, ParseError> {
    let mut tokens: Vec<Token> = args.tokens.by_ref().collect();
    let mut ret = None;
    let mut charset = None;
    if matches!(tokens.first(), Some(Token::Atom(a)) if a.eq_ignore_ascii_case("RETURN")) {
        tokens.remove(0);
        let Some(Token::List(options)) = (!tokens.is_empty()).then(|| tokens.remove(0)) else {
            return err("RETURN needs a list");
        };
        let mut r = SearchReturn::default();
        for o in options {
            match o.as_astring().map(|s| s.to_ascii_uppercase()).as_deref() {
                Some("MIN") => r.min = true,
                Some("MAX") => r.max = true,
                Some("ALL") => r.all = true,
                Some("COUNT") => r.count = true,
                Some("SAVE") => r.save = true,
                _ => return err("unknown SEARCH return option"),
            }
        }
        if r.is_empty() {
            r.all = true;
        }
        ret = Some(r);
    }
    if matches!(tokens.first(), Some(Token::Atom(a)) if a.eq_ignore_ascii_case("CHARSET")) {
        tokens.remove(0);
        let name = (!tokens.is_empty())
            .then(|| tokens.remove(0))
            .and_then(|t| t.as_astring())
            .ok_or_else(|| ParseError("CHARSET needs a charset name".into()))?;
        charset = Some(name.to_ascii_uppercase());
    }
    let mut keys = search_keys(tokens)?;
    if keys.is_empty() {
        return err("SEARCH needs search keys");
    }
    let key = if keys.len() == 1 {
        keys.remove(0)
    } else {
        SearchKey::And(keys)
    };
    Ok(CommandBody::Search {
        uid,
        charset,
        key,
        ret,
    })
}

/// A search key being read, waiting for the keys it holds.
enum Pending {
    /// A list: its keys so far (its tokens are the innermost iterator).
    List(Vec<SearchKey>),
    Not,
    /// OR before its first key, and after it.
    Or,
    OrWith(SearchKey),
}

/// The search keys in `tokens` (RFC 9051 §6.4.4 `search-key`, several in a row).
///
/// Without recursion: keys that hold keys (lists, `NOT`, `OR`) wait on a heap stack for
/// theirs. `NOT NOT NOT ...` and `OR OR OR ...` nest without any parenthesis, so the
/// tokenizer's bound on lists is not enough: at most [`MAX_DEPTH`] of the three together,
/// which bounds the recursive walks over the result (evaluation, `Drop`, `Debug`).
fn search_keys(tokens: Vec<Token>) -> Result<Vec<SearchKey>, ParseError> {
    // pending[0] is the command's own list of keys; tokens[n] is read by the innermost list.
    let mut pending = vec![Pending::List(Vec::new())];
    let mut tokens = vec![tokens.into_iter()];
    loop {
        let Some(it) = tokens.last_mut() else {
            return err("bad search key");
        };
        let token = it.next();
        let mut key = match token {
            None => {
                // The innermost list ends; a NOT or OR inside it lacks its key.
                let keys = match pending.pop() {
                    Some(Pending::List(keys)) => keys,
                    Some(Pending::Not) => return err("NOT needs a key"),
                    _ => return err("OR needs two keys"),
                };
                tokens.pop();
                if pending.is_empty() {
                    return Ok(keys);
                }
                SearchKey::And(keys)
            }
            Some(Token::Atom(a))
                if !a.eq_ignore_ascii_case("NOT") && !a.eq_ignore_ascii_case("OR") =>
            {
                leaf_key(a, it)?
            }
            Some(Token::List(_) | Token::Atom(_)) => {
                if pending.len() > MAX_DEPTH {
                    return err(format!(
                        "SEARCH nested too deeply: at most {MAX_DEPTH} levels of parentheses, NOT and OR"
                    ));
                }
                match token {
                    Some(Token::List(list)) => {
                        pending.push(Pending::List(Vec::new()));
                        tokens.push(list.into_iter());
                    }
                    Some(Token::Atom(a)) if a.eq_ignore_ascii_case("NOT") => {
                        pending.push(Pending::Not)
                    }
                    _ => pending.push(Pending::Or),
                }
                continue;
            }
            Some(_) => return err("bad search key"),
        };
        // A key is complete: it completes the keys waiting for it.
        loop {
            match pending.pop() {
                Some(Pending::Not) => key = SearchKey::Not(Box::new(key)),
                Some(Pending::Or) => {
                    pending.push(Pending::OrWith(key));
                    break;
                }
                Some(Pending::OrWith(first)) => key = SearchKey::Or(Box::new(first), Box::new(key)),
                Some(Pending::List(mut keys)) => {
                    keys.push(key);
                    pending.push(Pending::List(keys));
                    break;
                }
                None => return err("bad search key"),
            }
        }
    }
}

/// A search key that holds no other key.
fn leaf_key(atom: String, it: &mut std::vec::IntoIter<Token>) -> Result<SearchKey, ParseError> {
    let mut string = |what: &str| -> Result<String, ParseError> {
        it.next()
            .and_then(|t| t.as_astring())
            .ok_or_else(|| ParseError(format!("{what} needs an argument")))
    };
    use crate::flags::*;
    let upper = atom.to_ascii_uppercase();
    let flag = |flag, set| SearchKey::Flag { flag, set };
    let key = match upper.as_str() {
        "ALL" => SearchKey::All,
        "ANSWERED" => flag(ANSWERED, true),
        "UNANSWERED" => flag(ANSWERED, false),
        "DELETED" => flag(DELETED, true),
        "UNDELETED" => flag(DELETED, false),
        "DRAFT" => flag(DRAFT, true),
        "UNDRAFT" => flag(DRAFT, false),
        "FLAGGED" => flag(FLAGGED, true),
        "UNFLAGGED" => flag(FLAGGED, false),
        "SEEN" => flag(SEEN, true),
        "UNSEEN" => flag(SEEN, false),
        "NEW" => SearchKey::New,
        "OLD" => SearchKey::Old,
        "RECENT" => SearchKey::Recent,
        "KEYWORD" => SearchKey::Keyword {
            keyword: string("KEYWORD")?,
            set: true,
        },
        "UNKEYWORD" => SearchKey::Keyword {
            keyword: string("UNKEYWORD")?,
            set: false,
        },
        "FROM" | "TO" | "CC" | "BCC" | "SUBJECT" => SearchKey::Header {
            name: upper.clone(),
            value: string(&upper)?,
        },
        "HEADER" => SearchKey::Header {
            name: string("HEADER")?.to_ascii_uppercase(),
            value: string("HEADER")?,
        },
        "BODY" => SearchKey::Body(string("BODY")?),
        "TEXT" => SearchKey::Text(string("TEXT")?),
        "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
            let day = parse_date(&string(&upper)?).ok_or_else(|| ParseError("bad date".into()))?;
            match upper.as_str() {
                "BEFORE" => SearchKey::Before(day),
                "ON" => SearchKey::On(day),
                "SINCE" => SearchKey::Since(day),
                "SENTBEFORE" => SearchKey::SentBefore(day),
                "SENTON" => SearchKey::SentOn(day),
                _ => SearchKey::SentSince(day),
            }
        }
        "LARGER" => SearchKey::Larger(
            string("LARGER")?
                .parse()
                .map_err(|_| ParseError("bad number".into()))?,
        ),
        "SMALLER" => SearchKey::Smaller(
            string("SMALLER")?
                .parse()
                .map_err(|_| ParseError("bad number".into()))?,
        ),
        "UID" => SearchKey::Uid(
            SequenceSet::parse(&string("UID")?).ok_or_else(|| ParseError("bad UID set".into()))?,
        ),
        "OLDER" | "YOUNGER" => {
            let seconds = string(&upper)?
                .parse()
                .ok()
                .filter(|&n: &u32| n > 0)
                .ok_or_else(|| ParseError("bad interval".into()))?;
            if upper == "OLDER" {
                SearchKey::Older(seconds)
            } else {
                SearchKey::Younger(seconds)
            }
        }
        "MODSEQ" => SearchKey::ModSeq(
            string("MODSEQ")?
                .parse()
                .map_err(|_| ParseError("bad MODSEQ".into()))?,
        ),
        _ => match SequenceSet::parse(&atom) {
            Some(set) => SearchKey::Sequence(set),
            None => return err(format!("unknown search key {atom}")),
        },
    };
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::tests::p;

    #[test]
    fn search_keys() {
        let CommandBody::Search { key, ret, .. } = p(
            "SEARCH",
            "RETURN (MIN COUNT) CHARSET UTF-8 OR FROM \"bob\" NOT SEEN SINCE 1-Feb-2020 1:5",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            ret.unwrap(),
            SearchReturn {
                min: true,
                count: true,
                ..Default::default()
            }
        );
        let SearchKey::And(keys) = key else { panic!() };
        assert_eq!(keys.len(), 3);
        assert!(matches!(
            p("SEARCH", "CHARSET koi8-r ALL"),
            Ok(CommandBody::Search { charset: Some(c), .. }) if c == "KOI8-R"
        ));
        assert!(p("SEARCH", "CHARSET").is_err());
    }
}

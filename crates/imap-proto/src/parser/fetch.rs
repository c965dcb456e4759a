//! FETCH (RFC 9051 §6.4.5): data items, body sections, partials, and the CONDSTORE/QRESYNC
//! modifiers (RFC 7162).

use super::{Args, ParseError, err};
use crate::command::{CommandBody, FetchItem, Section, SectionText};
use crate::token::Token;

pub(super) fn fetch(args: &mut Args, uid: bool) -> Result<CommandBody, ParseError> {
    let set = args.set()?;
    let items = match args.next() {
        Some(Token::List(list)) => {
            let mut items = Vec::new();
            for t in list {
                let Token::Atom(a) = t else {
                    return err("bad fetch item");
                };
                items.extend(fetch_item(&a)?);
            }
            items
        }
        Some(Token::Atom(a)) => fetch_item(&a)?,
        _ => return err("FETCH needs items"),
    };
    let mut changed_since = None;
    let mut vanished = false;
    if let Some(Token::List(modifiers)) = args.next() {
        let mut it = modifiers.into_iter();
        while let Some(t) = it.next() {
            match t {
                Token::Atom(a) if a.eq_ignore_ascii_case("VANISHED") => vanished = true,
                Token::Atom(a) if a.eq_ignore_ascii_case("CHANGEDSINCE") => {
                    let Some(Token::Atom(v)) = it.next() else {
                        return err("bad CHANGEDSINCE");
                    };
                    changed_since = Some(
                        v.parse()
                            .map_err(|_| ParseError("bad CHANGEDSINCE".into()))?,
                    );
                }
                _ => return err("unsupported FETCH modifier"),
            }
        }
    }
    if vanished && (!uid || changed_since.is_none()) {
        // RFC 7162 §3.2.6: VANISHED only with UID FETCH and CHANGEDSINCE.
        return err("VANISHED needs UID FETCH with CHANGEDSINCE");
    }
    Ok(CommandBody::Fetch {
        uid,
        set,
        items,
        changed_since,
        vanished,
    })
}

fn fetch_item(text: &str) -> Result<Vec<FetchItem>, ParseError> {
    let upper = text.to_ascii_uppercase();
    Ok(match upper.as_str() {
        "ALL" => vec![
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
            FetchItem::Envelope,
        ],
        "FAST" => vec![
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
        ],
        "FULL" => vec![
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
            FetchItem::Envelope,
            FetchItem::Body,
        ],
        "UID" => vec![FetchItem::Uid],
        "FLAGS" => vec![FetchItem::Flags],
        "INTERNALDATE" => vec![FetchItem::InternalDate],
        "RFC822.SIZE" => vec![FetchItem::Rfc822Size],
        "ENVELOPE" => vec![FetchItem::Envelope],
        "BODY" => vec![FetchItem::Body],
        "BODYSTRUCTURE" => vec![FetchItem::BodyStructure],
        "MODSEQ" => vec![FetchItem::ModSeq],
        "RFC822" => vec![FetchItem::Rfc822(None)],
        "RFC822.HEADER" => vec![FetchItem::Rfc822(Some("HEADER"))],
        "RFC822.TEXT" => vec![FetchItem::Rfc822(Some("TEXT"))],
        _ => {
            let (name, _) = upper
                .split_once('[')
                .ok_or_else(|| ParseError(format!("unknown fetch item {text}")))?;
            let (peek, binary, size) = match name {
                "BODY" => (false, false, false),
                "BODY.PEEK" => (true, false, false),
                "BINARY" => (false, true, false),
                "BINARY.PEEK" => (true, true, false),
                "BINARY.SIZE" => (true, true, true),
                _ => return err(format!("unknown fetch item {text}")),
            };
            // Keep the original case of header field names.
            let original_rest = &text[name.len() + 1..];
            let close = original_rest
                .rfind(']')
                .ok_or_else(|| ParseError("missing ]".into()))?;
            let section = parse_section(&original_rest[..close])?;
            let after = &original_rest[close + 1..];
            let partial = if after.is_empty() {
                None
            } else {
                let inner = after
                    .strip_prefix('<')
                    .and_then(|s| s.strip_suffix('>'))
                    .ok_or_else(|| ParseError("bad partial".into()))?;
                let (start, len) = inner
                    .split_once('.')
                    .ok_or_else(|| ParseError("bad partial".into()))?;
                Some((
                    start
                        .parse()
                        .map_err(|_| ParseError("bad partial".into()))?,
                    len.parse().map_err(|_| ParseError("bad partial".into()))?,
                ))
            };
            if size {
                if partial.is_some() || section.text != SectionText::Full {
                    return err("BINARY.SIZE takes only part numbers");
                }
                vec![FetchItem::BinarySize(section.part)]
            } else {
                if binary && section.text != SectionText::Full {
                    return err("BINARY takes only part numbers");
                }
                vec![FetchItem::Section {
                    section,
                    partial,
                    peek,
                    binary,
                }]
            }
        }
    })
}

fn parse_section(text: &str) -> Result<Section, ParseError> {
    let mut section = Section::default();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !c.is_ascii_digit() {
            break;
        }
        let end = rest.find('.').unwrap_or(rest.len());
        let n: u32 = rest[..end]
            .parse()
            .map_err(|_| ParseError("bad section part".into()))?;
        if n == 0 {
            return err("section parts start at 1");
        }
        section.part.push(n);
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let upper = rest.to_ascii_uppercase();
    section.text = match upper.as_str() {
        "" => SectionText::Full,
        "HEADER" => SectionText::Header,
        "TEXT" => SectionText::Text,
        "MIME" if !section.part.is_empty() => SectionText::Mime,
        _ if upper.starts_with("HEADER.FIELDS") => {
            let not = upper.starts_with("HEADER.FIELDS.NOT");
            let open = rest
                .find('(')
                .ok_or_else(|| ParseError("HEADER.FIELDS needs a list".into()))?;
            let close = rest
                .rfind(')')
                .ok_or_else(|| ParseError("HEADER.FIELDS needs a list".into()))?;
            let fields: Vec<String> = rest[open + 1..close]
                .split_whitespace()
                .map(|f| f.trim_matches('"').to_string())
                .collect();
            if fields.is_empty() {
                return err("HEADER.FIELDS needs field names");
            }
            SectionText::HeaderFields { not, fields }
        }
        _ => return err(format!("bad section {text}")),
    };
    Ok(section)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::tests::p;

    #[test]
    fn fetch_items() {
        let CommandBody::Fetch { uid, items, .. } = p("UID", "FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)]<0.100> BODY[1.2.MIME] BINARY[2])").unwrap() else {
            panic!()
        };
        assert!(uid);
        assert_eq!(items.len(), 5);
        assert_eq!(
            items[2],
            FetchItem::Section {
                section: Section {
                    part: vec![],
                    text: SectionText::HeaderFields {
                        not: false,
                        fields: vec!["From".into(), "Subject".into()]
                    }
                },
                partial: Some((0, 100)),
                peek: true,
                binary: false
            }
        );
        assert!(p("FETCH", "1 (BODY[0])").is_err());
        assert!(p("FETCH", "x FLAGS").is_err());
    }
}

//! Tokens of an IMAP command (RFC 9051 §9): atoms, quoted strings, literals, lists.

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An atom, including `BODY[...]<...>` fetch attributes with their brackets.
    Atom(String),
    /// A quoted string or a literal (literals may hold any bytes).
    String(Vec<u8>),
    /// `NIL`.
    Nil,
    /// A parenthesised list.
    List(Vec<Token>),
}

impl Token {
    /// The token as text, if it is an atom or a string (astring).
    pub fn as_astring(&self) -> Option<String> {
        match self {
            Token::Atom(a) => Some(a.clone()),
            Token::String(s) => String::from_utf8(s.clone()).ok(),
            _ => None,
        }
    }
}

/// Why a command could not be tokenized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError(pub &'static str);

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }
}

/// Splits the arguments of a complete command (everything after the command name, literal
/// bytes included) into tokens.
pub fn tokenize(data: &[u8]) -> Result<Vec<Token>, TokenError> {
    let mut cursor = Cursor { data, pos: 0 };
    let tokens = list_items(&mut cursor, false)?;
    Ok(tokens)
}

fn list_items(c: &mut Cursor<'_>, nested: bool) -> Result<Vec<Token>, TokenError> {
    let mut items = Vec::new();
    loop {
        while c.peek() == Some(b' ') {
            c.pos += 1;
        }
        match c.peek() {
            None => {
                return if nested {
                    Err(TokenError("unclosed parenthesis"))
                } else {
                    Ok(items)
                };
            }
            Some(b'\r') | Some(b'\n') => {
                c.pos += 1;
            }
            Some(b')') => {
                if !nested {
                    return Err(TokenError("unexpected )"));
                }
                c.pos += 1;
                return Ok(items);
            }
            Some(b'(') => {
                c.pos += 1;
                items.push(Token::List(list_items(c, true)?));
            }
            Some(b'"') => items.push(quoted(c)?),
            Some(b'{') => items.push(literal(c)?),
            Some(b'~') if c.data.get(c.pos + 1) == Some(&b'{') => items.push(literal(c)?),
            Some(_) => items.push(atom(c)?),
        }
    }
}

fn quoted(c: &mut Cursor<'_>) -> Result<Token, TokenError> {
    c.pos += 1;
    let mut out = Vec::new();
    loop {
        match c.peek() {
            None | Some(b'\r') | Some(b'\n') => {
                return Err(TokenError("unterminated quoted string"));
            }
            Some(b'"') => {
                c.pos += 1;
                return Ok(Token::String(out));
            }
            Some(b'\\') => {
                c.pos += 1;
                match c.peek() {
                    Some(b @ (b'"' | b'\\')) => {
                        out.push(b);
                        c.pos += 1;
                    }
                    _ => return Err(TokenError("bad escape in quoted string")),
                }
            }
            Some(b) => {
                out.push(b);
                c.pos += 1;
            }
        }
    }
}

fn literal(c: &mut Cursor<'_>) -> Result<Token, TokenError> {
    if c.peek() == Some(b'~') {
        // RFC 3516 literal8: treated as a literal.
        c.pos += 1;
    }
    let rest = &c.data[c.pos..];
    let close = rest
        .iter()
        .position(|&b| b == b'}')
        .ok_or(TokenError("bad literal"))?;
    let spec = std::str::from_utf8(&rest[1..close]).map_err(|_| TokenError("bad literal"))?;
    let len: usize = spec
        .trim_end_matches(['+', '-'])
        .parse()
        .map_err(|_| TokenError("bad literal length"))?;
    let mut pos = c.pos + close + 1;
    if c.data.get(pos..pos + 2) == Some(b"\r\n") {
        pos += 2;
    } else if c.data.get(pos) == Some(&b'\n') {
        pos += 1;
    } else {
        return Err(TokenError("literal must end the line"));
    }
    let bytes = c
        .data
        .get(pos..pos + len)
        .ok_or(TokenError("short literal"))?;
    c.pos = pos + len;
    Ok(Token::String(bytes.to_vec()))
}

fn atom(c: &mut Cursor<'_>) -> Result<Token, TokenError> {
    let start = c.pos;
    // A section (`BODY[HEADER.FIELDS (DATE FROM)]`) may hold spaces and parentheses.
    let mut depth = 0usize;
    while let Some(b) = c.peek() {
        match b {
            b'[' => depth += 1,
            b']' if depth > 0 => depth -= 1,
            b' ' | b')' | b'(' | b'\r' | b'\n' if depth == 0 => break,
            b'\r' | b'\n' => {
                // Never closed, so no section: `[` is a plain ATOM-CHAR, as in the
                // mailbox name `[Gmail]/Sent` (RFC 9051 §9 lets astrings hold brackets).
                c.pos = start;
                while c.peek().is_some_and(|b| !b" ()\r\n{\"".contains(&b)) {
                    c.pos += 1;
                }
                if matches!(c.peek(), Some(b'{' | b'"')) {
                    return Err(TokenError("bad character in atom"));
                }
                break;
            }
            b'{' | b'"' if depth == 0 => return Err(TokenError("bad character in atom")),
            _ => {}
        }
        c.pos += 1;
    }
    // A partial `<n.m>` after a section belongs to the atom.
    let text =
        std::str::from_utf8(&c.data[start..c.pos]).map_err(|_| TokenError("atom is not UTF-8"))?;
    if text.is_empty() {
        return Err(TokenError("empty atom"));
    }
    if text.eq_ignore_ascii_case("NIL") {
        return Ok(Token::Nil);
    }
    Ok(Token::Atom(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = tokenize(
            b"\"a \\\"b\\\"\" {3}\r\nx y (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.10>) NIL atom",
        )
        .unwrap();
        assert_eq!(
            t,
            vec![
                Token::String(b"a \"b\"".to_vec()),
                Token::String(b"x y".to_vec()),
                Token::List(vec![
                    Token::Atom("FLAGS".into()),
                    Token::Atom("BODY.PEEK[HEADER.FIELDS (From To)]<0.10>".into())
                ]),
                Token::Nil,
                Token::Atom("atom".into()),
            ]
        );
        assert!(tokenize(b"(a").is_err());
        assert!(tokenize(b"\"open").is_err());
        assert!(tokenize(b"{5}\r\nab").is_err());
        // An unclosed `[` is an ordinary atom character, not the start of a section.
        assert_eq!(
            tokenize(b"1:* a[b [Gmail]/Sent\r\n").unwrap(),
            vec![
                Token::Atom("1:*".into()),
                Token::Atom("a[b".into()),
                Token::Atom("[Gmail]/Sent".into()),
            ]
        );
    }
}

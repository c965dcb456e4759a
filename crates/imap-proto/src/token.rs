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

/// The deepest nesting of parenthesised lists [`tokenize`] accepts, and (in `parser/search.rs`) of
/// lists, `NOT` and `OR` together in a SEARCH. No client comes near it (imap-codec stops at 9
/// SEARCH levels, a BODYSTRUCTURE is about one level per MIME level), and it keeps every walk
/// over a parsed command (the parser, SEARCH evaluation, `Drop`, `Debug`) a few hundred
/// frames deep at most, far from the end of any thread's stack.
pub const MAX_DEPTH: usize = 100;

/// The text of the BAD for a command nested deeper than [`MAX_DEPTH`].
pub const TOO_DEEP: &str = "Too deeply nested: at most 100 levels of parentheses";

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    /// Atoms starting before this position are read without sections: a `[` before it was
    /// found unclosed up to the end of its line, and looking ahead again for every later atom
    /// of that line would make a line of `a[ a[ a[ ...` cost quadratic time.
    plain_until: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }
}

/// What to do with lists nested deeper than [`MAX_DEPTH`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum TooDeep {
    /// Commands: the whole command is an error (answered BAD, RFC 9051 §7.1.5).
    Refuse,
    /// Responses read by a client: a too-deep list stands as an empty list, so a hostile
    /// server's 100,000-level BODYSTRUCTURE leaves the rest of the FETCH response usable.
    Elide,
}

/// Splits the arguments of a complete command (everything after the command name, literal
/// bytes included) into tokens. Lists nested deeper than [`MAX_DEPTH`] are an error
/// ([`TOO_DEEP`]).
pub fn tokenize(data: &[u8]) -> Result<Vec<Token>, TokenError> {
    items(data, TooDeep::Refuse)
}

/// Like [`tokenize`], for data from a server (a client reading FETCH responses): a list nested
/// deeper than [`MAX_DEPTH`] is read past and stands as an empty list.
pub fn tokenize_response(data: &[u8]) -> Result<Vec<Token>, TokenError> {
    items(data, TooDeep::Elide)
}

/// The tokenizer proper. It keeps the lists being read on a heap stack, never recursing, so
/// the depth it can look at is bounded by [`MAX_DEPTH`] and not by the thread's stack.
fn items(data: &[u8], too_deep: TooDeep) -> Result<Vec<Token>, TokenError> {
    let mut c = Cursor {
        data,
        pos: 0,
        plain_until: 0,
    };
    // open[0] is the top level; open[n] the list nested n deep.
    let mut open: Vec<Vec<Token>> = vec![Vec::new()];
    // Levels beyond MAX_DEPTH being read past (TooDeep::Elide).
    let mut elided = 0usize;
    loop {
        while c.peek() == Some(b' ') {
            c.pos += 1;
        }
        let token = match c.peek() {
            None => {
                if open.len() > 1 || elided > 0 {
                    return Err(TokenError("unclosed parenthesis"));
                }
                return Ok(open.pop().unwrap_or_default());
            }
            Some(b'\r') | Some(b'\n') => {
                c.pos += 1;
                continue;
            }
            Some(b')') => {
                c.pos += 1;
                if elided > 0 {
                    elided -= 1;
                    if elided > 0 {
                        continue;
                    }
                    Token::List(Vec::new())
                } else {
                    match open.pop() {
                        Some(list) if !open.is_empty() => Token::List(list),
                        _ => return Err(TokenError("unexpected )")),
                    }
                }
            }
            Some(b'(') => {
                c.pos += 1;
                if elided > 0 || open.len() > MAX_DEPTH {
                    match too_deep {
                        TooDeep::Refuse => return Err(TokenError(TOO_DEEP)),
                        TooDeep::Elide => elided += 1,
                    }
                } else {
                    open.push(Vec::new());
                }
                continue;
            }
            Some(b'"') => quoted(&mut c)?,
            Some(b'{') => literal(&mut c)?,
            Some(b'~') if c.data.get(c.pos + 1) == Some(&b'{') => literal(&mut c)?,
            Some(_) => atom(&mut c)?,
        };
        if elided == 0
            && let Some(list) = open.last_mut()
        {
            list.push(token);
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
    let mut sections = start >= c.plain_until;
    while let Some(b) = c.peek() {
        if !sections {
            if b" ()\r\n{\"".contains(&b) {
                break;
            }
            c.pos += 1;
            continue;
        }
        match b {
            b'[' => depth += 1,
            b']' if depth > 0 => depth -= 1,
            b' ' | b')' | b'(' | b'\r' | b'\n' if depth == 0 => break,
            b'\r' | b'\n' => {
                // Never closed, so no section: `[` is a plain ATOM-CHAR, as in the
                // mailbox name `[Gmail]/Sent` (RFC 9051 §9 lets astrings hold brackets).
                // Nothing closes on this line any more: later atoms need not look.
                c.plain_until = c.pos;
                c.pos = start;
                sections = false;
                continue;
            }
            b'{' | b'"' if depth == 0 => return Err(TokenError("bad character in atom")),
            _ => {}
        }
        c.pos += 1;
    }
    if !sections && matches!(c.peek(), Some(b'{' | b'"')) {
        return Err(TokenError("bad character in atom"));
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
        // Once a `[` is unclosed up to the end of its line, later atoms of that line are read
        // plainly (no quadratic look-ahead); the next line looks for sections again.
        assert_eq!(
            tokenize(b"a[b BODY[TEXT] c[d\r\nBODY[HEADER.FIELDS (X)]\r\n").unwrap(),
            vec![
                Token::Atom("a[b".into()),
                Token::Atom("BODY[TEXT]".into()),
                Token::Atom("c[d".into()),
                Token::Atom("BODY[HEADER.FIELDS (X)]".into()),
            ]
        );
        let many = format!("{}\r\n", "a[ ".repeat(30_000));
        assert_eq!(tokenize(many.as_bytes()).map(|t| t.len()), Ok(30_000));
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        let at_limit = format!("{}x{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(tokenize(at_limit.as_bytes()).is_ok());
        let past = format!("({at_limit})");
        assert_eq!(tokenize(past.as_bytes()), Err(TokenError(TOO_DEEP)));
        // Responses: the level past the limit stands as an empty list, the rest is kept.
        let mut expected = Token::List(Vec::new());
        for _ in 0..MAX_DEPTH {
            expected = Token::List(vec![expected]);
        }
        let response = format!("{past} NIL");
        assert_eq!(
            tokenize_response(response.as_bytes()),
            Ok(vec![expected, Token::Nil])
        );
        // Strings and literals inside an elided list are read past correctly.
        let response = format!("{}\"a)\" {{2}}\r\n)){} z", "(".repeat(200), ")".repeat(200));
        assert_eq!(
            tokenize_response(response.as_bytes()).map(|t| t.len()),
            Ok(2)
        );
        assert_eq!(
            tokenize_response(b"(a"),
            Err(TokenError("unclosed parenthesis"))
        );
        assert_eq!(tokenize_response(b"a)"), Err(TokenError("unexpected )")));
        assert!(TOO_DEEP.contains(&MAX_DEPTH.to_string()));
    }
}

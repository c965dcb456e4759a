//! HTML for readers: HTML made into readable text ([`html_to_text`], the one conversion the
//! CLI and the webmail share), and HTML re-written so a sanitiser's HTML parser runs in about
//! linear time ([`bounded_html`], used by the webmail's sanitiser and by [`html_to_text`]).
//! Pure code: no IO.

use std::collections::HashMap;

/// Block elements: their start and end tags are line boundaries.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "li",
    "tr",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "pre",
    "hr",
];

/// Table cells: each starts after a space (their end tags are often left out).
const CELLS: &[&str] = &["td", "th"];

/// Stands for `<br>` until the layout is done, so the white space next to a boundary can be
/// dropped without dropping line breaks. NUL: the HTML parser never writes one in text (it
/// becomes U+FFFD), so no message can.
const BREAK: char = '\0';

/// HTML as readable text: what `pigeon read show` prints and the webmail's reading pane shows
/// for HTML-only mail.
///
/// The sanitiser's HTML parser (html5ever, through ammonia) reads the document as a browser
/// does (every entity, named and numeric; `<` in text; `>` inside quoted attributes;
/// comments; misnested and foster-parented table content) and writes it back with only the
/// elements that shape text, without attributes, and without `<script>` and `<style>` and
/// their content; big documents are first made shallow ([`bounded_html`]), so this takes
/// about linear time. That output is well formed, so one pass lays it out: the start and end
/// of a block element (paragraphs, divisions, lists and their items, table rows and tables,
/// headings, quotes, `<pre>`, `<hr>`) are a line boundary (a line break unless at the start of
/// a line), `<br>` a line break, a table cell starts after a space; the source's white space
/// next to a boundary or a break goes; link text stays and link targets go. Last: line breaks
/// of the source inside text stay (hard-wrapped HTML, `<pre>`), runs of white space within a
/// line become one space, lines are trimmed, at most one empty line stands anywhere, and the
/// text ends with one line break.
pub fn html_to_text(html: &str) -> String {
    let kept: std::collections::HashSet<&str> =
        BLOCKS.iter().chain(CELLS).chain(&["br"]).copied().collect();
    let cleaned = ammonia::Builder::empty()
        .tags(kept)
        .generic_attributes(Default::default())
        .tag_attributes(Default::default())
        .link_rel(None)
        .clean(&bounded_html(html))
        .to_string();
    let mut decoded = String::with_capacity(cleaned.len());
    // After a boundary or a break, until the next text: the source's white space is dropped.
    let mut at_boundary = false;
    let mut rest = cleaned.as_str();
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        let c = match c {
            // Only the kept tags, without attributes: the text's `<` is written `&lt;`.
            '<' => {
                let Some(close) = rest.find('>') else { break };
                let tag = &rest[..close];
                rest = &rest[close + 1..];
                let end = tag.starts_with('/');
                let name = tag.trim_start_matches('/').trim_end_matches('/').trim();
                if name == "br" || BLOCKS.contains(&name) {
                    let kept = decoded.trim_end_matches([' ', '\t', '\r', '\n']).len();
                    decoded.truncate(kept);
                    if name == "br" {
                        decoded.push(BREAK);
                    } else if !decoded.is_empty() && !decoded.ends_with(BREAK) {
                        decoded.push('\n');
                    }
                    at_boundary = true;
                    continue;
                }
                if end || !CELLS.contains(&name) {
                    continue;
                }
                ' '
            }
            // The sanitiser writes text back as HTML: these are the only entities it writes.
            '&' => {
                let Some(semicolon) = rest.find(';') else {
                    break;
                };
                let entity = &rest[..semicolon];
                rest = &rest[semicolon + 1..];
                match entity {
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "quot" => '"',
                    "#39" => '\'',
                    "nbsp" => ' ',
                    _ => continue,
                }
            }
            c => c,
        };
        if at_boundary && c.is_whitespace() {
            continue;
        }
        decoded.push(c);
        at_boundary = false;
    }
    // `<br>`s were kept apart from the source's line breaks until here.
    let decoded = decoded.replace(BREAK, "\n");
    let mut text = String::with_capacity(decoded.len());
    for line in decoded.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() && (text.is_empty() || text.ends_with("\n\n")) {
            continue;
        }
        text.push_str(&line);
        text.push('\n');
    }
    text.trim_end().to_string() + "\n"
}

/// Documents with at most this many tags go to the HTML parser as they are.
pub const HTML_TAGS_AS_IS: usize = 4096;

/// The deepest element nesting a re-written document has.
pub const MAX_HTML_DEPTH: usize = 256;

/// HTML the sanitiser (and [`html_to_text`]) can parse in about linear time.
///
/// html5ever builds the tree an HTML5 browser would, and for many start tags it looks through
/// the stack of open elements (is a `p` open in button scope?), so its time grows with the
/// number of tags times the nesting: 100,000 nested `<div>`s (1.1 MB) took minutes. It never
/// recursed (tested to 300,000 levels), so this is about time, not the stack.
///
/// A document with at most [`HTML_TAGS_AS_IS`] tags is cleaned as it is. A bigger one is
/// written again first, by a single pass with its own stack of open elements: well nested
/// (every end tag closes the element it follows, missing ones are added), at most
/// [`MAX_HTML_DEPTH`] elements deep (deeper tags are dropped, their text kept), text with `<`
/// escaped and comments, `<script>` and `<style>` left out (the sanitiser drops them too).
/// html5ever then only ever sees the tags written here, nested at most that deep, plus the
/// few it adds itself (`tbody`, re-opened formatting elements). Misnested formatting such as
/// `<b><p>x</b>y</p>` may look a little different than in a browser.
pub fn bounded_html(html: &str) -> std::borrow::Cow<'_, str> {
    let bytes = html.as_bytes();
    let tags = bytes
        .windows(2)
        .filter(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'/'))
        .count();
    if tags <= HTML_TAGS_AS_IS {
        return std::borrow::Cow::Borrowed(html);
    }
    std::borrow::Cow::Owned(rewrite_html(html))
}

/// Elements without content: never open.
pub const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input",
    "keygen", "link", "meta", "param", "source", "track", "wbr",
];

/// Elements whose content is not markup: dropped with it.
const DROPPED_WITH_CONTENT: &[&str] = &["script", "style", "template"];

/// Elements whose content is text up to their end tag: the content is kept as text.
const TEXT_CONTENT: &[&str] = &[
    "iframe",
    "noembed",
    "noframes",
    "noscript",
    "plaintext",
    "textarea",
    "title",
    "xmp",
];

/// Elements a start tag `name` closes when one of them is the current element, as HTML's
/// tree construction does (a new `<p>` ends the open `p`, a new `<li>` the open `li`).
fn closes(name: &str) -> &'static [&'static str] {
    match name {
        "li" => &["p", "li"],
        "dd" | "dt" => &["p", "dd", "dt"],
        "td" | "th" => &["p", "td", "th"],
        "tr" => &["p", "td", "th", "tr"],
        "tbody" | "thead" | "tfoot" => &["p", "td", "th", "tr", "tbody", "thead", "tfoot"],
        "option" => &["option"],
        "optgroup" => &["option", "optgroup"],
        "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => &["p", "h1", "h2", "h3", "h4", "h5", "h6"],
        "address" | "article" | "aside" | "blockquote" | "center" | "details" | "dialog"
        | "dir" | "div" | "dl" | "fieldset" | "figcaption" | "figure" | "footer" | "form"
        | "header" | "hgroup" | "main" | "menu" | "nav" | "ol" | "p" | "pre" | "section"
        | "summary" | "table" | "ul" => &["p"],
        _ => &[],
    }
}

/// One tag: its lower-case name, whether it is an end tag, its attributes as written (from
/// the first byte after the name to before `>`), and where the input continues.
struct Tag<'a> {
    name: String,
    end: bool,
    attributes: &'a str,
    next: usize,
}

/// Reads the tag at `at` (a `<` followed by a letter, or `</` and a letter). Attribute values
/// in quotes may hold `>`. `None` when the input ends inside the tag (HTML drops such a tag).
fn read_tag(html: &str, at: usize) -> Option<Tag<'_>> {
    let bytes = html.as_bytes();
    let end = bytes.get(at + 1) == Some(&b'/');
    let name_start = at + 1 + usize::from(end);
    let mut i = name_start;
    while i < bytes.len()
        && !matches!(
            bytes[i],
            b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/' | b'>'
        )
    {
        i += 1;
    }
    let name = html[name_start..i].to_ascii_lowercase();
    let attributes_start = i;
    let mut quote = None;
    while i < bytes.len() {
        match (bytes[i], quote) {
            (q, Some(open)) if q == open => quote = None,
            (_, Some(_)) => {}
            (b'>', None) => {
                return Some(Tag {
                    name,
                    end,
                    attributes: &html[attributes_start..i],
                    next: i + 1,
                });
            }
            // A quote opens a value only right after `=` (and spaces).
            (b'"' | b'\'', None) => {
                let before = html[attributes_start..i].trim_end();
                if before.ends_with('=') {
                    quote = Some(bytes[i]);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where markup that is not a tag ends: a comment (`<!--...-->`, HTML's rules for its ends),
/// a doctype or other `<!...>`, `<?...>` or `</` and no letter.
fn skip_markup(html: &str, at: usize) -> usize {
    let rest = &html[at..];
    if let Some(comment) = rest.strip_prefix("<!--") {
        if comment.starts_with('>') {
            return at + 5;
        }
        if comment.starts_with("->") {
            return at + 6;
        }
        let ends = [
            comment.find("-->").map(|p| p + 3),
            comment.find("--!>").map(|p| p + 4),
        ];
        return match ends.into_iter().flatten().min() {
            Some(end) => at + 4 + end,
            None => html.len(),
        };
    }
    match rest.find('>') {
        Some(end) => at + end + 1,
        None => html.len(),
    }
}

/// Where the end tag of `name` (any case) starts, from `from` on.
fn find_end_tag(html: &str, from: usize, name: &str) -> Option<usize> {
    let bytes = html.as_bytes();
    let mut at = from;
    while let Some(p) = html[at..].find("</").map(|p| at + p) {
        let after = p + 2 + name.len();
        if bytes
            .get(p + 2..after)
            .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
            && bytes
                .get(after)
                .is_none_or(|b| matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/' | b'>'))
        {
            return Some(p);
        }
        at = p + 2;
    }
    None
}

/// Writes attributes again with every value in double quotes, so nothing in them can end
/// the tag early or differently than read.
fn write_attributes(out: &mut String, attributes: &str) {
    let bytes = attributes.as_bytes();
    let mut i = 0;
    let is_space = |b: u8| matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ');
    while i < bytes.len() {
        while i < bytes.len() && (is_space(bytes[i]) || bytes[i] == b'/') {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len() && !is_space(bytes[i]) && !matches!(bytes[i], b'/' | b'=' | b'>')
            || i == name_start && i < bytes.len() && bytes[i] == b'='
        {
            i += 1;
        }
        let name = &attributes[name_start..i];
        if name.is_empty() {
            i += 1;
            continue;
        }
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        let mut value = None;
        if bytes.get(i) == Some(&b'=') {
            i += 1;
            while i < bytes.len() && is_space(bytes[i]) {
                i += 1;
            }
            match bytes.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    let start = i + 1;
                    let end = attributes[start..]
                        .find(q as char)
                        .map_or(bytes.len(), |e| start + e);
                    value = Some(&attributes[start..end]);
                    i = end + 1;
                }
                _ => {
                    let start = i;
                    while i < bytes.len() && !is_space(bytes[i]) {
                        i += 1;
                    }
                    value = Some(&attributes[start..i]);
                }
            }
        }
        out.push(' ');
        out.push_str(&name.replace(['"', '\'', '<'], ""));
        if let Some(value) = value {
            out.push_str("=\"");
            out.push_str(&value.replace('"', "&quot;"));
            out.push('"');
        }
    }
}

/// The rewrite [`bounded_html`] describes: one pass, linear in the input.
fn rewrite_html(html: &str) -> String {
    let bytes = html.as_bytes();
    let mut out = String::with_capacity(html.len() + html.len() / 8);
    // Open elements, whether each was written, and how many of each name are open: an end
    // tag without an open element of its name is dropped without looking through the stack.
    let mut open: Vec<(String, bool)> = Vec::new();
    let mut open_names: HashMap<String, usize> = HashMap::new();
    let mut written = 0usize;
    let close_top = |out: &mut String,
                     open: &mut Vec<(String, bool)>,
                     open_names: &mut HashMap<String, usize>,
                     written: &mut usize| {
        if let Some((name, was_written)) = open.pop() {
            if let Some(n) = open_names.get_mut(&name) {
                *n -= 1;
            }
            if was_written {
                out.push_str("</");
                out.push_str(&name);
                out.push('>');
                *written -= 1;
            }
        }
    };
    let mut at = 0;
    while at < bytes.len() {
        let Some(lt) = html[at..].find('<').map(|p| at + p) else {
            out.push_str(&html[at..]);
            break;
        };
        out.push_str(&html[at..lt]);
        let next = bytes.get(lt + 1).copied().unwrap_or(0);
        let after = bytes.get(lt + 2).copied().unwrap_or(0);
        let is_tag = next.is_ascii_alphabetic() || next == b'/' && after.is_ascii_alphabetic();
        if !is_tag {
            if matches!(next, b'!' | b'?' | b'/') {
                at = skip_markup(html, lt);
            } else {
                out.push_str("&lt;");
                at = lt + 1;
            }
            continue;
        }
        let Some(tag) = read_tag(html, lt) else {
            break;
        };
        at = tag.next;
        let name = tag.name.as_str();
        if matches!(name, "html" | "head" | "body") {
            continue;
        }
        if tag.end {
            if open_names.get(name).copied().unwrap_or(0) > 0 {
                loop {
                    let top_is_it = open.last().is_some_and(|(n, _)| n == name);
                    close_top(&mut out, &mut open, &mut open_names, &mut written);
                    if top_is_it {
                        break;
                    }
                }
            }
            continue;
        }
        if DROPPED_WITH_CONTENT.contains(&name) || TEXT_CONTENT.contains(&name) {
            // The content runs to the matching end tag (all of the rest for plaintext).
            let end = if name == "plaintext" {
                None
            } else {
                find_end_tag(html, at, name)
            };
            let content = &html[at..end.unwrap_or(html.len())];
            if TEXT_CONTENT.contains(&name) {
                out.push_str(&content.replace('<', "&lt;"));
            }
            at = match end {
                Some(e) => read_tag(html, e).map_or(html.len(), |t| t.next),
                None => html.len(),
            };
            continue;
        }
        while open
            .last()
            .is_some_and(|(n, _)| closes(name).contains(&n.as_str()))
        {
            close_top(&mut out, &mut open, &mut open_names, &mut written);
        }
        let void = VOID.contains(&name);
        let write = void || written < MAX_HTML_DEPTH;
        if write {
            out.push('<');
            out.push_str(name);
            write_attributes(&mut out, tag.attributes);
            out.push('>');
        }
        if !void {
            *open_names.entry(tag.name.clone()).or_default() += 1;
            open.push((tag.name, write));
            written += usize::from(write);
        }
    }
    while !open.is_empty() {
        close_top(&mut out, &mut open, &mut open_names, &mut written);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_elements_and_breaks_become_lines() {
        assert_eq!(
            html_to_text(
                "<h1>Title</h1><p>one<br>two<BR/>three</p><div>four</div>\
                 <table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>\
                 <blockquote>quoted</blockquote>after"
            ),
            "Title\none\ntwo\nthree\nfour\na b\nc\nquoted\nafter\n"
        );
    }

    #[test]
    fn list_items_are_lines_and_similar_names_are_not() {
        assert_eq!(
            html_to_text(
                "<ul><li>one<li>two</ul><link rel=x><bro>same line</bro><table><tr><td>a<td>b<tr><th>c</th><th>d</th></table>"
            ),
            "one\ntwo\nsame line\na b\nc d\n"
        );
    }

    #[test]
    fn entities_decode_named_and_numeric() {
        assert_eq!(
            html_to_text(
                "<p>a &lt; b &amp;&amp; c &gt; d&nbsp;&quot;e&quot; &#39;f&#39; Caf&eacute; &#x4E2D;&#25991; &copy;</p>"
            ),
            "a < b && c > d \"e\" 'f' Café 中文 ©\n"
        );
        // Double-escaped text stays escaped once.
        assert_eq!(html_to_text("&amp;lt;p&amp;gt;"), "&lt;p&gt;\n");
    }

    #[test]
    fn scripts_styles_and_comments_are_dropped() {
        assert_eq!(
            html_to_text(
                "<style>p { color: red }</style><script>if (a < b) alert('<p>x</p>')</script>\
                 <!-- <p>hidden</p> -->visible<SCRIPT type=x>bad()</SCRIPT>"
            ),
            "visible\n"
        );
    }

    #[test]
    fn links_keep_their_text_and_attributes_do_not_leak() {
        assert_eq!(
            html_to_text(
                "<p>Read <a href=\"https://example.com/?a=1&amp;b=2\" title=\"x > y\">the news</a>.</p>"
            ),
            "Read the news.\n"
        );
    }

    #[test]
    fn white_space_collapses_and_blank_lines_stay_single() {
        assert_eq!(
            html_to_text("\n\n  <p>  Hello\t  <b>world</b> </p>\n\n\n\n<p>again</p>\n   \n"),
            "Hello world\nagain\n"
        );
        // Only `<br>`s make empty lines; a new line of the source next to a tag does not.
        assert_eq!(
            html_to_text("a<br>\n<br>b<br>\n  c\n<p>\n d\n e </p>\n<pre>f\n  g</pre>"),
            "a\n\nb\nc\nd\ne\nf\ng\n"
        );
        assert_eq!(html_to_text(""), "\n");
        assert_eq!(html_to_text("a < b and c > d"), "a < b and c > d\n");
    }

    /// The conversion `pigeon read` had before it was shared, on its own test.
    #[test]
    fn the_cli_conversion_gives_what_it_gave() {
        assert_eq!(
            html_to_text("<style>p{}</style><p>Hello&nbsp;<b>world</b></p><p>a &lt; b &amp; c</p>"),
            "Hello world\na < b & c\n"
        );
    }

    /// A big document (rewritten by [`bounded_html`] first) converts like a small one.
    #[test]
    fn big_documents_convert_like_small_ones() {
        let block = "<div><p>para <b>bold</b></p><ul><li>item</ul></div>";
        let small = html_to_text(block);
        let big = html_to_text(&block.repeat(2000));
        assert!(block.repeat(2000).matches('<').count() > HTML_TAGS_AS_IS);
        assert!(big == small.repeat(2000), "{:.300}", big);
    }

    /// A big document that is well nested comes out of the sanitiser exactly as it would
    /// without the rewrite: quoted `>` and `"` in attributes, comments, entities, voids,
    /// tables, implied ends of `p`, `li` and `td`, scripts and styles.
    #[test]
    fn rewriting_a_big_document_changes_nothing_the_sanitiser_keeps() {
        let block = "<!--[if mso]><table><tr><td><![endif]-->\
            <table width=\"100%\" style='font-family: \"Segoe UI\"' data-x=\"a>b\">\
            <tr><td class=c1>Caf&eacute; &amp; <b>bold <i>it</i></b><br/>line\
            <td><a href=\"https://example.com/?a=1&amp;b=2\" title='say \"hi\"'>link</a>\
            <tr><td><img src=\"cid:logo\" alt=\"x > y\"><ul><li>one<li>two</ul>\
            <p>first<p>second 3 &lt; 4</td></tr></table>\
            <script>if (a < b) { document.write('<div>') }</script><style>p > b {}</style>\
            <div><p>para <span>span</span></p></div><?php x ?><!DOCTYPE html>";
        let html = format!(
            "<html><head><title>T &lt;</title></head><body>{}</body></html>",
            block.repeat(300)
        );
        assert!(html.matches('<').count() > HTML_TAGS_AS_IS);
        let clean = |h: &str| ammonia::Builder::default().clean(h).to_string();
        assert_eq!(clean(&rewrite_html(&html)), clean(&html));
    }
}

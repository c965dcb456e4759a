//! FETCH (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE).

use imap_proto::command::{FetchItem, SectionText, SequenceSet};
use imap_proto::write;
use message::imap as mime;
use store::flags;

use super::Ctx;
use crate::reply::{CommandError, CommandResult, compress, ok};
use crate::state::{Account, Selected};

fn needs_body(item: &FetchItem) -> bool {
    !matches!(
        item,
        FetchItem::Uid
            | FetchItem::Flags
            | FetchItem::InternalDate
            | FetchItem::Rfc822Size
            | FetchItem::ModSeq
            | FetchItem::Envelope
            | FetchItem::Body
            | FetchItem::BodyStructure
    )
}

/// ENVELOPE, BODY and BODYSTRUCTURE come from the summary stored at delivery.
fn needs_summary(item: &FetchItem) -> bool {
    matches!(
        item,
        FetchItem::Envelope | FetchItem::Body | FetchItem::BodyStructure
    )
}

/// Marks `\Seen` as a side effect (BODY[...] without PEEK, RFC822, RFC822.TEXT).
fn sets_seen(item: &FetchItem) -> bool {
    match item {
        FetchItem::Section { peek, .. } => !peek,
        FetchItem::Rfc822(None) | FetchItem::Rfc822(Some("TEXT")) => true,
        _ => false,
    }
}

/// Why a section has no bytes to send.
enum NoSection {
    /// There is no such part: the item is NIL.
    Absent,
    /// BINARY of a part whose transfer encoding the server does not know (`x-uuencode`):
    /// the command fails with `NO [UNKNOWN-CTE]` (RFC 3516 §4.3). Malformed base64 or
    /// quoted-printable is no such case: it is decoded leniently (message::decode).
    UnknownCte,
}

impl From<message::decode::UnknownCte> for NoSection {
    fn from(_: message::decode::UnknownCte) -> NoSection {
        NoSection::UnknownCte
    }
}

/// The bytes of a section of `raw`.
fn section_bytes(
    raw: &[u8],
    part: &[u32],
    text: &SectionText,
    binary: bool,
) -> Result<Vec<u8>, NoSection> {
    section_bytes_or_absent(raw, part, text, binary)?.ok_or(NoSection::Absent)
}

/// The bytes of a section of `raw`, `None` if the part does not exist.
fn section_bytes_or_absent(
    raw: &[u8],
    part: &[u32],
    text: &SectionText,
    binary: bool,
) -> Result<Option<Vec<u8>>, NoSection> {
    if part.is_empty() {
        let header_end = message::headers::header_len(raw);
        return Ok(Some(match text {
            SectionText::Full => raw.to_vec(),
            SectionText::Header => raw[..header_end].to_vec(),
            SectionText::Text => raw[header_end..].to_vec(),
            SectionText::Mime => return Ok(None),
            SectionText::HeaderFields { not, fields } => {
                mime::header_fields(&raw[..header_end], fields, *not)
            }
        }));
    }
    let Some(range) = mime::part_range(raw, part) else {
        return Ok(None);
    };
    Ok(match text {
        SectionText::Full if binary => Some(range.decoded?),
        SectionText::Full => raw.get(range.body).map(<[u8]>::to_vec),
        SectionText::Mime => raw.get(range.header).map(<[u8]>::to_vec),
        SectionText::Header => range.inner.and_then(|i| raw.get(i.0)).map(<[u8]>::to_vec),
        SectionText::Text => range.inner.and_then(|i| raw.get(i.1)).map(<[u8]>::to_vec),
        SectionText::HeaderFields { not, fields } => range
            .inner
            .and_then(|i| raw.get(i.0))
            .map(|header| mime::header_fields(header, fields, *not)),
    })
}

/// RFC 3516 §4.3: a server that cannot decode a section's transfer encoding fails the
/// request with `NO [UNKNOWN-CTE]`.
fn unknown_cte(spec: &str) -> CommandError {
    CommandError::no(
        Some("UNKNOWN-CTE"),
        format!("cannot decode the transfer encoding of part {spec}"),
    )
}

// One parameter per argument of the command.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch(
    cx: &mut Ctx<'_>,
    account: &mut Account,
    selected: &mut Selected,
    uid: bool,
    set: &SequenceSet,
    items: &[FetchItem],
    changed_since: Option<u64>,
    vanished: bool,
) -> CommandResult {
    let mut items = items.to_vec();
    if uid && !items.contains(&FetchItem::Uid) {
        items.insert(0, FetchItem::Uid);
    }
    if changed_since.is_some() {
        account.enabled.condstore = true;
        if !items.contains(&FetchItem::ModSeq) {
            items.push(FetchItem::ModSeq);
        }
    }
    let view = &mut selected.view;
    let mailbox = view.mailbox.id;
    let mut uids = view.resolve(set, uid, &selected.saved);
    if vanished && let Some(since) = changed_since {
        // RFC 7162 §3.2.6: UIDs in the set expunged since then, before the FETCH data.
        let max = view.mailbox.uid_next.max(view.max_uid() + 1);
        let gone: Vec<u32> = cx
            .store
            .expunged_since(mailbox, since)
            .await?
            .into_iter()
            .filter(|u| set.contains(*u, max))
            .collect();
        if !gone.is_empty() {
            let line = format!("* VANISHED (EARLIER) {}\r\n", compress(&gone));
            cx.out().extend_from_slice(line.as_bytes());
        }
    }
    if let Some(since) = changed_since {
        uids.retain(|u| view.meta(*u).is_some_and(|m| m.modseq > since));
    }
    // The implicit \Seen is stored first, so the FETCH can show the new flags.
    let wants_seen = !view.read_only && items.iter().any(sets_seen);
    if wants_seen {
        let unseen: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|u| view.meta(*u).is_some_and(|m| m.flags & flags::SEEN == 0))
            .collect();
        if !unseen.is_empty() {
            let (updated, _) = cx
                .store
                .store_flags(
                    mailbox,
                    &unseen,
                    store::FlagMode::Add,
                    flags::SEEN,
                    &[],
                    None,
                )
                .await?;
            for u in updated {
                view.set_flags(u.uid, u.flags, u.keywords, u.modseq);
            }
            if !items.contains(&FetchItem::Flags) {
                items.push(FetchItem::Flags);
            }
        }
    }
    let body_needed = items.iter().any(needs_body);
    let mut summaries: std::collections::HashMap<u32, store::MessageSummary> =
        if items.iter().any(needs_summary) {
            cx.store
                .summaries(mailbox, &uids)
                .await?
                .into_iter()
                .collect()
        } else {
            Default::default()
        };
    let mut out = Vec::new();
    for u in uids {
        let (Some(seq), Some(meta)) = (view.seq_of(u), view.meta(u)) else {
            continue;
        };
        // A message stored without a summary (none should be) is summarised now.
        let missing_summary = items.iter().any(needs_summary) && !summaries.contains_key(&u);
        let raw = if body_needed || missing_summary {
            match cx.store.read_message(mailbox, u).await {
                Ok(raw) => Some(raw),
                // Expunged by another session, not reported yet: nothing to show.
                Err(store::StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let raw = raw.as_deref().unwrap_or_default();
        let summary = summaries
            .remove(&u)
            .or_else(|| missing_summary.then(|| message::summary::summarize(raw)));
        // There whenever an item needs it (loaded or made above); NIL is never written.
        let summary_part = |out: &mut Vec<u8>, part: fn(&store::MessageSummary) -> &[u8]| {
            out.extend_from_slice(summary.as_ref().map(part).unwrap_or(b"NIL"))
        };
        out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            match item {
                FetchItem::Uid => out.extend_from_slice(format!("UID {u}").as_bytes()),
                FetchItem::Flags => {
                    out.extend_from_slice(b"FLAGS ");
                    write::flag_list(&mut out, meta.flags, &meta.keywords);
                }
                FetchItem::InternalDate => out.extend_from_slice(
                    format!(
                        "INTERNALDATE {}",
                        write::internal_date(meta.internal_date())
                    )
                    .as_bytes(),
                ),
                FetchItem::Rfc822Size => {
                    out.extend_from_slice(format!("RFC822.SIZE {}", meta.size).as_bytes())
                }
                FetchItem::ModSeq => {
                    out.extend_from_slice(format!("MODSEQ ({})", meta.modseq).as_bytes())
                }
                FetchItem::Envelope => {
                    out.extend_from_slice(b"ENVELOPE ");
                    summary_part(&mut out, |s| &s.envelope);
                }
                FetchItem::Body => {
                    out.extend_from_slice(b"BODY ");
                    summary_part(&mut out, |s| &s.body);
                }
                FetchItem::BodyStructure => {
                    out.extend_from_slice(b"BODYSTRUCTURE ");
                    summary_part(&mut out, |s| &s.body_structure);
                }
                FetchItem::Rfc822(part) => {
                    let header_end = message::headers::header_len(raw);
                    let (name, bytes) = match part {
                        None => ("RFC822", raw),
                        Some("HEADER") => ("RFC822.HEADER", &raw[..header_end]),
                        _ => ("RFC822.TEXT", &raw[header_end..]),
                    };
                    out.extend_from_slice(format!("{name} {{{}}}\r\n", bytes.len()).as_bytes());
                    out.extend_from_slice(bytes);
                }
                FetchItem::Section {
                    section,
                    partial,
                    binary,
                    ..
                } => {
                    let name = if *binary { "BINARY" } else { "BODY" };
                    let spec = section.spec();
                    match section_bytes(raw, &section.part, &section.text, *binary) {
                        Ok(bytes) => {
                            let (origin, slice) = match partial {
                                Some((start, len)) => {
                                    let start_index = (*start as usize).min(bytes.len());
                                    let end =
                                        start_index.saturating_add(*len as usize).min(bytes.len());
                                    (format!("<{start}>"), &bytes[start_index..end])
                                }
                                None => (String::new(), &bytes[..]),
                            };
                            let literal8 = if *binary && slice.contains(&0) {
                                "~"
                            } else {
                                ""
                            };
                            out.extend_from_slice(
                                format!("{name}[{spec}]{origin} {literal8}{{{}}}\r\n", slice.len())
                                    .as_bytes(),
                            );
                            out.extend_from_slice(slice);
                        }
                        Err(NoSection::Absent) => {
                            out.extend_from_slice(format!("{name}[{spec}] NIL").as_bytes())
                        }
                        Err(NoSection::UnknownCte) => return Err(unknown_cte(&spec)),
                    }
                }
                FetchItem::BinarySize(part) => {
                    let spec: Vec<String> = part.iter().map(u32::to_string).collect();
                    let size = match section_bytes(raw, part, &SectionText::Full, true) {
                        Ok(bytes) => bytes.len(),
                        Err(NoSection::Absent) => 0,
                        Err(NoSection::UnknownCte) => {
                            return Err(unknown_cte(&spec.join(".")));
                        }
                    };
                    out.extend_from_slice(
                        format!("BINARY.SIZE[{}] {size}", spec.join(".")).as_bytes(),
                    );
                }
            }
        }
        out.extend_from_slice(b")\r\n");
    }
    cx.out().extend_from_slice(&out);
    Ok(ok("FETCH completed"))
}

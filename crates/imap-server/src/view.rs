//! The selected mailbox as this session sees it: messages in sequence order, and the changes
//! not yet reported to the client.

use imap_proto::command::SequenceSet;
use store::{Change, Mailbox, Store, StoreError};

/// What the session knows of one message.
#[derive(Debug, Clone)]
// One per message of every open mailbox (10k IDLE sessions × 100 messages = 1M of them), so
// 32 bytes: dates as u32 seconds (1970..2106), sizes as u32 (messages are far below 4 GiB),
// keywords behind one thin pointer that is null when there are none (the usual case).
pub struct Meta {
    pub uid: u32,
    pub flags: u32,
    pub size: u32,
    date: u32,
    pub modseq: u64,
    pub keywords: Keywords,
}

const _: () = assert!(std::mem::size_of::<Meta>() == 32);

impl Meta {
    /// Unix seconds.
    pub fn internal_date(&self) -> i64 {
        i64::from(self.date)
    }
}

/// A message's keywords; no allocation when there are none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
// Boxed on purpose: a thin 8-byte pointer where a Vec would take 24 bytes in every Meta.
#[allow(clippy::box_collection)]
pub struct Keywords(Option<Box<Vec<String>>>);

impl From<Vec<String>> for Keywords {
    fn from(keywords: Vec<String>) -> Keywords {
        Keywords((!keywords.is_empty()).then(|| Box::new(keywords)))
    }
}

impl std::ops::Deref for Keywords {
    type Target = [String];
    fn deref(&self) -> &[String] {
        self.0.as_deref().map(Vec::as_slice).unwrap_or(&[])
    }
}

impl From<store::MessageFlags> for Meta {
    fn from(m: store::MessageFlags) -> Meta {
        Meta {
            uid: m.uid,
            flags: m.flags,
            keywords: m.keywords.into(),
            modseq: m.modseq,
            date: m.internal_date.clamp(0, i64::from(u32::MAX)) as u32,
            size: u32::try_from(m.size).unwrap_or(u32::MAX),
        }
    }
}

/// The selected mailbox.
pub struct View {
    pub mailbox: Mailbox,
    pub read_only: bool,
    /// In sequence order (ascending UID).
    messages: Vec<Meta>,
    /// Expunged by someone, not yet reported (the messages keep their sequence numbers).
    pending_expunge: Vec<u32>,
    /// Flags changed by someone else, not yet reported.
    flag_updates: Vec<u32>,
    /// New messages may have arrived.
    maybe_new: bool,
}

impl View {
    pub async fn open(
        store: &dyn Store,
        mailbox: Mailbox,
        read_only: bool,
    ) -> Result<View, StoreError> {
        let flags = store.message_flags(mailbox.id, 0).await?;
        // A fresh, exact allocation: collecting in place would keep the bigger store rows'.
        let mut messages = Vec::with_capacity(flags.len());
        messages.extend(flags.into_iter().map(Meta::from));
        Ok(View {
            mailbox,
            read_only,
            messages,
            pending_expunge: Vec::new(),
            flag_updates: Vec::new(),
            maybe_new: false,
        })
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn messages(&self) -> &[Meta] {
        &self.messages
    }

    pub fn max_uid(&self) -> u32 {
        self.messages.last().map(|m| m.uid).unwrap_or(0)
    }

    fn index(&self, uid: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub fn seq_of(&self, uid: u32) -> Option<usize> {
        self.index(uid).map(|i| i + 1)
    }

    pub fn meta(&self, uid: u32) -> Option<&Meta> {
        self.index(uid).map(|i| &self.messages[i])
    }

    pub fn deleted_uids(&self) -> Vec<u32> {
        self.messages
            .iter()
            .filter(|m| m.flags & store::flags::DELETED != 0)
            .map(|m| m.uid)
            .collect()
    }

    /// The UIDs a sequence set (or UID set) names, in order.
    pub fn resolve(&self, set: &SequenceSet, uid: bool, saved: &[u32]) -> Vec<u32> {
        match set {
            SequenceSet::Saved => saved
                .iter()
                .copied()
                .filter(|u| self.index(*u).is_some())
                .collect(),
            _ if uid => {
                let max = self.max_uid();
                self.messages
                    .iter()
                    .map(|m| m.uid)
                    .filter(|&u| set.contains(u, max))
                    .collect()
            }
            _ => {
                let max = self.messages.len() as u32;
                self.messages
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| set.contains(*i as u32 + 1, max))
                    .map(|(_, m)| m.uid)
                    .collect()
            }
        }
    }

    /// Our own STORE changed a message: nothing to report later.
    pub fn set_flags(&mut self, uid: u32, flags: u32, keywords: Vec<String>, modseq: u64) {
        if let Some(i) = self.index(uid) {
            let m = &mut self.messages[i];
            m.flags = flags;
            m.keywords = keywords.into();
            m.modseq = modseq;
        }
        self.flag_updates.retain(|u| *u != uid);
    }

    /// Takes in a change notification.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::MessageAdded { mailbox_id, .. } if mailbox_id == self.mailbox.id => {
                self.maybe_new = true
            }
            Change::FlagsChanged {
                mailbox_id,
                uid,
                modseq,
                flags,
                keywords,
            } if mailbox_id == self.mailbox.id => {
                if let Some(i) = self.index(uid) {
                    let m = &mut self.messages[i];
                    if m.modseq < modseq {
                        let changed = m.flags != flags || *m.keywords != *keywords;
                        m.flags = flags;
                        m.keywords = keywords.into();
                        m.modseq = modseq;
                        if changed && !self.flag_updates.contains(&uid) {
                            self.flag_updates.push(uid);
                        }
                    }
                }
            }
            Change::Expunged {
                mailbox_id, uids, ..
            } if mailbox_id == self.mailbox.id => {
                for uid in uids {
                    if self.index(uid).is_some() && !self.pending_expunge.contains(&uid) {
                        self.pending_expunge.push(uid);
                    }
                }
            }
            _ => {}
        }
    }

    /// Reloads from the store after lost notifications, noting every difference.
    pub async fn resync(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        let fresh: Vec<Meta> = store
            .message_flags(self.mailbox.id, 0)
            .await?
            .into_iter()
            .map(Meta::from)
            .collect();
        let fresh_uids: std::collections::HashSet<u32> = fresh.iter().map(|m| m.uid).collect();
        for m in &self.messages {
            if !fresh_uids.contains(&m.uid) && !self.pending_expunge.contains(&m.uid) {
                self.pending_expunge.push(m.uid);
            }
        }
        for f in fresh {
            match self.index(f.uid) {
                Some(i) => {
                    let m = &mut self.messages[i];
                    if m.flags != f.flags || m.keywords != f.keywords {
                        m.flags = f.flags;
                        m.keywords = f.keywords.clone();
                        m.modseq = f.modseq;
                        if !self.flag_updates.contains(&f.uid) {
                            self.flag_updates.push(f.uid);
                        }
                    }
                }
                None => self.maybe_new = true,
            }
        }
        Ok(())
    }

    /// Writes the untagged responses for what changed: EXPUNGE (if allowed), EXISTS, FETCH.
    pub async fn flush(
        &mut self,
        store: &dyn Store,
        out: &mut Vec<u8>,
        expunges_allowed: bool,
        condstore: bool,
        qresync: bool,
    ) -> Result<(), StoreError> {
        if expunges_allowed && !self.pending_expunge.is_empty() {
            let mut gone = std::mem::take(&mut self.pending_expunge);
            gone.sort_unstable();
            if qresync {
                // RFC 7162 §3.2.10: with QRESYNC enabled, VANISHED replaces EXPUNGE.
                let present: Vec<u32> = gone
                    .iter()
                    .copied()
                    .filter(|u| self.index(*u).is_some())
                    .collect();
                if !present.is_empty() {
                    out.extend_from_slice(
                        format!("* VANISHED {}\r\n", crate::reply::compress(&present)).as_bytes(),
                    );
                }
                self.messages
                    .retain(|m| present.binary_search(&m.uid).is_err());
            }
            // Highest first, so each number is still right when the client reads it.
            for uid in gone.into_iter().rev() {
                if let Some(i) = self.index(uid) {
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                    self.messages.remove(i);
                }
            }
            let messages = &self.messages;
            self.flag_updates
                .retain(|u| messages.binary_search_by_key(u, |m| m.uid).is_ok());
        }
        if self.maybe_new {
            self.maybe_new = false;
            let new = store.message_flags(self.mailbox.id, self.max_uid()).await?;
            if !new.is_empty() {
                self.messages.extend(new.into_iter().map(Meta::from));
                out.extend_from_slice(format!("* {} EXISTS\r\n", self.messages.len()).as_bytes());
            }
        }
        for uid in std::mem::take(&mut self.flag_updates) {
            if self.pending_expunge.contains(&uid) {
                continue;
            }
            if let Some(i) = self.index(uid) {
                let m = &self.messages[i];
                out.extend_from_slice(format!("* {} FETCH (UID {} FLAGS ", i + 1, uid).as_bytes());
                imap_proto::write::flag_list(out, m.flags, &m.keywords);
                if condstore {
                    out.extend_from_slice(format!(" MODSEQ ({})", m.modseq).as_bytes());
                }
                out.extend_from_slice(b")\r\n");
            }
        }
        Ok(())
    }
}

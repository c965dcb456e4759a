// pigeon webmail: plain ES module, no build step. Talks to the JMAP-shaped API; mail content is
// only ever put into the page as text (textContent) or into a sandboxed frame.

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const state = {
  csrf: null, account: null, username: null,
  mailboxes: [], current: null, page: 0, total: 0, ids: [], emails: new Map(),
  selected: new Set(), open: null, query: {}, events: null,
};
const draft = { id: null, replyingTo: null, inReplyTo: null, references: [], attachments: [], dirty: false, timer: null };

// ---------- API ----------
async function jmap(calls) {
  const response = await fetch('/jmap/api', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': state.csrf },
    body: JSON.stringify({ using: ['urn:ietf:params:jmap:core', 'urn:ietf:params:jmap:mail', 'urn:ietf:params:jmap:submission'], methodCalls: calls }),
  });
  if (response.status === 401) { location.reload(); throw new Error('not logged in'); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body.methodResponses;
}

function result(responses, callId) {
  const r = responses.find((x) => x[2] === callId);
  if (!r) throw new Error('no answer to ' + callId);
  if (r[0] === 'error') throw new Error(r[1].description || r[1].type);
  return r[1];
}

function setFailure(created, key) {
  const failed = created.notCreated && created.notCreated[key];
  return failed ? (failed.description || failed.type) : null;
}

// ---------- login ----------
// A page neither on HTTPS nor on this machine (W3C Secure Contexts) would send the password
// across the network in clear: it is never sent from there, whatever the server would say.
const INSECURE = window.isSecureContext ? '' :
  'This page is not encrypted: open the webmail at its https:// address to log in.';

function showLogin(message) {
  if (state.events) { state.events.close(); state.events = null; }
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || INSECURE;
  $('login-user').focus();
}

$('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('login-error').textContent = INSECURE;
  if (INSECURE) return;
  const response = await fetch('/api/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: $('login-user').value, password: $('login-password').value }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) { $('login-error').textContent = body.error || 'Login failed'; return; }
  $('login-password').value = '';
  state.csrf = body.csrfToken; state.account = body.accountId; state.username = body.username;
  start();
});

$('logout').addEventListener('click', async () => {
  await fetch('/api/logout', { method: 'POST', headers: { 'X-CSRF-Token': state.csrf } }).catch(() => null);
  // A fresh page: nothing of this user's mail stays in memory or on screen.
  location.reload();
});

async function boot() {
  const response = await fetch('/jmap/session');
  if (!response.ok) { showLogin(); return; }
  const session = await response.json();
  state.csrf = session.csrfToken; state.username = session.username;
  state.account = Object.keys(session.accounts)[0];
  start();
}

async function start() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('whoami').textContent = state.username;
  await loadMailboxes();
  const inbox = state.mailboxes.find((m) => m.role === 'inbox') || state.mailboxes[0];
  if (inbox) await selectMailbox(inbox.id);
  listen();
}

// ---------- push ----------
function listen() {
  if (state.events) state.events.close();
  state.events = new EventSource('/jmap/eventsource?csrf=' + encodeURIComponent(state.csrf));
  let pending = null;
  state.events.addEventListener('state', () => {
    clearTimeout(pending);
    pending = setTimeout(() => { loadMailboxes(); loadList(); }, 150);
  });
}

// ---------- folders ----------
async function loadMailboxes() {
  const r = await jmap([['Mailbox/get', { accountId: state.account }, 'm']]);
  state.mailboxes = result(r, 'm').list.sort((a, b) => a.sortOrder - b.sortOrder || a.name.localeCompare(b.name));
  const list = $('folder-list');
  list.replaceChildren();
  const move = $('act-move');
  move.replaceChildren(new Option('Move to…', ''));
  for (const m of state.mailboxes) {
    const li = document.createElement('li');
    li.dataset.id = m.id;
    li.dataset.role = m.role || '';
    li.className = m.id === state.current ? 'current' : '';
    const name = document.createElement('span');
    name.textContent = m.name;
    li.append(name);
    if (m.unreadEmails > 0) {
      const count = document.createElement('span');
      count.className = 'count';
      count.textContent = m.unreadEmails;
      li.append(count);
    }
    li.addEventListener('click', () => { selectMailbox(m.id); $('app').classList.remove('show-folders'); });
    list.append(li);
    move.append(new Option(m.name, m.id));
  }
}

function mailboxByRole(role) { return state.mailboxes.find((m) => m.role === role); }

async function selectMailbox(id) {
  state.current = id; state.page = 0; state.selected.clear();
  for (const li of $('folder-list').children) li.className = li.dataset.id === id ? 'current' : '';
  await loadList();
}

$('folder-new').addEventListener('click', async () => {
  const name = prompt('Name of the new folder');
  if (!name) return;
  const r = await jmap([['Mailbox/set', { create: { n: { name } } }, 's']]);
  const failure = setFailure(result(r, 's'), 'n');
  if (failure) alert(failure);
  loadMailboxes();
});

$('folder-rename').addEventListener('click', async () => {
  const m = state.mailboxes.find((x) => x.id === state.current);
  const name = m && prompt('New name for ' + m.name, m.name);
  if (!name) return;
  const r = await jmap([['Mailbox/set', { update: { [m.id]: { name } } }, 's']]);
  const s = result(r, 's');
  if (s.notUpdated[m.id]) alert(s.notUpdated[m.id].description);
  loadMailboxes();
});

$('folder-delete').addEventListener('click', async () => {
  const m = state.mailboxes.find((x) => x.id === state.current);
  if (!m || !confirm('Delete the folder ' + m.name + ' and its messages?')) return;
  const r = await jmap([['Mailbox/set', { destroy: [m.id] }, 's']]);
  const s = result(r, 's');
  if (s.notDestroyed[m.id]) { alert(s.notDestroyed[m.id].description); return; }
  await loadMailboxes();
  selectMailbox(mailboxByRole('inbox').id);
});

$('trash-empty').addEventListener('click', async () => {
  const trash = mailboxByRole('trash');
  if (!trash || !confirm('Delete every message in Trash for good?')) return;
  await jmap([['pigeon:Mailbox/empty', { mailboxId: trash.id }, 'e']]);
  loadMailboxes(); loadList();
});

// ---------- list ----------
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

function who(list) {
  if (!list || !list.length) return '';
  return list.map((a) => a.name || a.email).join(', ');
}

function fullAddress(a) { return a.name ? `${a.name} <${a.email}>` : a.email; }

async function loadList() {
  if (!state.current) return;
  const filter = { inMailbox: state.current, ...state.query };
  const r = await jmap([
    ['Email/query', { filter, position: state.page * PAGE, limit: PAGE }, 'q'],
    ['Email/get', { '#ids': { resultOf: 'q', name: 'Email/query', path: '/ids' } }, 'g'],
  ]);
  const query = result(r, 'q');
  if (!query.ids.length && query.total > 0 && state.page > 0) {
    // The last page emptied (moves, deletes): show the one before.
    state.page = Math.floor((query.total - 1) / PAGE);
    return loadList();
  }
  state.total = query.total;
  state.ids = query.ids;
  const list = $('messages');
  list.replaceChildren();
  for (const email of result(r, 'g').list) {
    // Keep a body fetched when the message was opened.
    const known = state.emails.get(email.id);
    state.emails.set(email.id, known && known.body ? { ...email, body: known.body } : email);
    list.append(row(email));
  }
  const first = state.total ? state.page * PAGE + 1 : 0;
  $('page-info').textContent = `${first}–${state.page * PAGE + state.ids.length} of ${state.total}`;
  $('page-prev').disabled = state.page === 0;
  $('page-next').disabled = (state.page + 1) * PAGE >= state.total;
}

function row(email) {
  const li = document.createElement('li');
  li.dataset.id = email.id;
  const unread = !email.keywords.$seen;
  li.className = (unread ? 'unread' : '') + (email.id === state.open ? ' current' : '');
  const check = document.createElement('input');
  check.type = 'checkbox'; check.className = 'check';
  check.checked = state.selected.has(email.id);
  check.addEventListener('click', (e) => {
    e.stopPropagation();
    if (check.checked) state.selected.add(email.id); else state.selected.delete(email.id);
  });
  const from = document.createElement('span');
  from.className = 'from';
  const box = state.mailboxes.find((m) => m.id === state.current);
  from.textContent = box && (box.role === 'sent' || box.role === 'drafts') ? 'To: ' + who(email.to) : who(email.from);
  const meta = document.createElement('span');
  meta.className = 'meta';
  const when = new Date(email.receivedAt);
  meta.textContent = `${email.keywords.$flagged ? '★ ' : ''}${email.hasAttachment ? '📎 ' : ''}${dateFormat.format(when)} · ${Math.max(1, Math.round(email.size / 1024))} KB`;
  if (email.keywords.$flagged) meta.classList.add('flag');
  const subject = document.createElement('span');
  subject.className = 'subject';
  subject.textContent = email.subject || '(no subject)';
  li.append(check, from, meta, subject);
  li.addEventListener('click', () => openEmail(email.id));
  return li;
}

$('page-prev').addEventListener('click', () => { state.page = Math.max(0, state.page - 1); loadList(); });
$('page-next').addEventListener('click', () => { state.page += 1; loadList(); });
$('select-all').addEventListener('change', (e) => {
  state.selected = new Set(e.target.checked ? state.ids : []);
  for (const box of $('messages').querySelectorAll('.check')) box.checked = e.target.checked;
});

// ---------- search ----------
$('search').addEventListener('submit', (e) => {
  e.preventDefault();
  const q = {};
  const put = (key, id) => { const v = $(id).value.trim(); if (v) q[key] = v; };
  put('text', 'search-text'); put('from', 'search-from'); put('to', 'search-to');
  put('subject', 'search-subject'); put('body', 'search-body');
  put('after', 'search-after'); put('before', 'search-before');
  if ($('search-attachment').checked) q.hasAttachment = true;
  state.query = q; state.page = 0;
  $('list-status').textContent = Object.keys(q).length ? 'Search results' : '';
  loadList();
});
$('search-clear').addEventListener('click', () => {
  $('search').reset();
  state.query = {}; state.page = 0;
  loadList();
});

// ---------- actions ----------
function targets() {
  if (state.selected.size) return [...state.selected];
  return state.open ? [state.open] : [];
}

async function patch(ids, patchFor) {
  if (!ids.length) return;
  const update = {};
  for (const id of ids) update[id] = patchFor(state.emails.get(id));
  const r = await jmap([['Email/set', { update }, 'u']]);
  const s = result(r, 'u');
  const failed = Object.values(s.notUpdated || {});
  if (failed.length) alert(failed[0].description || failed[0].type);
  state.selected.clear();
  await Promise.all([loadList(), loadMailboxes()]);
}

$('act-read').addEventListener('click', () => patch(targets(), () => ({ 'keywords/$seen': true })));
$('act-unread').addEventListener('click', () => patch(targets(), () => ({ 'keywords/$seen': null })));
$('act-flag').addEventListener('click', () => patch(targets(), (e) => ({ 'keywords/$flagged': e && e.keywords.$flagged ? null : true })));
$('act-move').addEventListener('change', async (e) => {
  const to = e.target.value;
  e.target.value = '';
  if (to) { await patch(targets(), () => ({ mailboxIds: { [to]: true } })); closeReader(); }
});
$('act-delete').addEventListener('click', deleteSelected);

async function deleteSelected() {
  const ids = targets();
  if (!ids.length) return;
  const trash = mailboxByRole('trash');
  if (!trash || state.current === trash.id) {
    if (!confirm(`Delete ${ids.length} message(s) for good?`)) return;
    await jmap([['Email/set', { destroy: ids }, 'd']]);
    state.selected.clear();
    await Promise.all([loadList(), loadMailboxes()]);
  } else {
    await patch(ids, () => ({ mailboxIds: { [trash.id]: true } }));
  }
  closeReader();
}

// ---------- reading ----------
function closeReader() {
  state.open = null;
  $('reader').hidden = true;
  $('app').classList.remove('reading');
}
$('back').addEventListener('click', closeReader);

async function openEmail(id) {
  state.open = id;
  for (const li of $('messages').children) li.classList.toggle('current', li.dataset.id === id);
  const r = await jmap([['Thread/get', { ids: [id] }, 't']]);
  const thread = result(r, 't').list[0];
  const ids = thread ? thread.emailIds : [id];
  const g = await jmap([['Email/get', { ids, properties: ['body'] }, 'g']]);
  const emails = result(g, 'g').list;
  const container = $('thread');
  container.replaceChildren();
  for (const email of emails) {
    state.emails.set(email.id, email);
    container.append(article(email, email.id === id));
  }
  $('original').href = '/jmap/raw/' + encodeURIComponent(id);
  const box = state.mailboxes.find((m) => m.id === state.current);
  $('edit-draft').hidden = !(box && box.role === 'drafts');
  $('reader').hidden = false;
  $('app').classList.add('reading');
  const opened = emails.find((e) => e.id === id);
  if (opened && !opened.keywords.$seen) {
    await jmap([['Email/set', { update: { [id]: { 'keywords/$seen': true } } }, 's']]);
    loadMailboxes();
    const li = $('messages').querySelector(`li[data-id="${CSS.escape(id)}"]`);
    if (li) li.classList.remove('unread');
  }
}

function article(email, focused) {
  const a = document.createElement('article');
  a.dataset.id = email.id;
  if (focused) a.classList.add('focused');
  const h = document.createElement('h2');
  h.textContent = email.subject || '(no subject)';
  const headers = document.createElement('div');
  headers.className = 'headers';
  const line = (label, value) => {
    if (!value) return;
    const d = document.createElement('div');
    d.textContent = `${label}: ${value}`;
    headers.append(d);
  };
  line('From', email.from.map(fullAddress).join(', '));
  line('To', email.to.map(fullAddress).join(', '));
  line('Cc', email.cc.map(fullAddress).join(', '));
  line('Date', dateFormat.format(new Date(email.sentAt || email.receivedAt)));
  a.append(h, headers);
  const body = email.body || { text: '', hasHtml: false, attachments: [] };
  if (body.hasHtml) {
    const frame = document.createElement('iframe');
    frame.className = 'body-frame';
    frame.setAttribute('sandbox', 'allow-popups allow-popups-to-escape-sandbox');
    frame.setAttribute('referrerpolicy', 'no-referrer');
    frame.title = 'Message';
    frame.src = '/jmap/html/' + encodeURIComponent(email.id);
    if (body.hasRemoteImages) {
      const note = document.createElement('div');
      note.className = 'remote-note';
      note.textContent = 'Remote images are blocked. ';
      const show = document.createElement('button');
      show.className = 'show-images';
      show.textContent = 'Show images';
      show.addEventListener('click', () => { frame.src = '/jmap/html/' + encodeURIComponent(email.id) + '?remote=1'; note.remove(); });
      note.append(show);
      a.append(note);
    }
    a.append(frame);
  } else {
    const pre = document.createElement('div');
    pre.className = 'body-text';
    pre.textContent = body.text;
    a.append(pre);
  }
  const files = body.attachments.filter((x) => !x.cid || !body.hasHtml);
  if (files.length) {
    const ul = document.createElement('ul');
    ul.className = 'attachments';
    for (const file of files) {
      const li = document.createElement('li');
      const link = document.createElement('a');
      const name = file.name || 'attachment';
      link.href = `/jmap/download/${state.account}/${encodeURIComponent(file.blobId)}/${encodeURIComponent(name)}?type=${encodeURIComponent(file.type)}`;
      link.textContent = `${name} (${Math.max(1, Math.round(file.size / 1024))} KB)`;
      link.className = 'attachment';
      link.setAttribute('download', name);
      li.append(link);
      ul.append(li);
    }
    a.append(ul);
  }
  return a;
}

// ---------- composing ----------
function openComposer(title, fields) {
  Object.assign(draft, { id: null, replyingTo: null, inReplyTo: null, references: [], attachments: [], dirty: false }, fields.draft || {});
  $('compose-title').textContent = title;
  $('c-to').value = fields.to || ''; $('c-cc').value = fields.cc || ''; $('c-bcc').value = '';
  $('c-subject').value = fields.subject || '';
  $('c-body').value = fields.body || '';
  $('c-status').textContent = '';
  renderAttachments();
  $('composer').showModal();
  if (fields.to) {
    // Replies are written above the quote.
    $('c-body').focus();
    $('c-body').setSelectionRange(0, 0);
  } else {
    $('c-to').focus();
  }
  clearInterval(draft.timer);
  draft.timer = setInterval(() => { if (draft.dirty) saveDraft(true); }, 5000);
}

function splitAddresses(text) {
  return text.split(/[,;]/).map((s) => s.trim()).filter(Boolean);
}

function composition() {
  return {
    to: splitAddresses($('c-to').value), cc: splitAddresses($('c-cc').value), bcc: splitAddresses($('c-bcc').value),
    subject: $('c-subject').value, text: $('c-body').value,
    attachments: draft.attachments.filter((a) => a.blobId).map((a) => ({ blobId: a.blobId, name: a.name, type: a.type })),
    inReplyTo: draft.inReplyTo, references: draft.references, replyingTo: draft.replyingTo, draftId: draft.id,
  };
}

for (const id of ['c-to', 'c-cc', 'c-bcc', 'c-subject', 'c-body']) {
  $(id).addEventListener('input', () => { draft.dirty = true; });
}

let suggestTimer = null;
for (const id of ['c-to', 'c-cc', 'c-bcc']) {
  $(id).addEventListener('input', (e) => {
    clearTimeout(suggestTimer);
    const typed = e.target.value.split(/[,;]/).pop().trim();
    if (typed.length < 1) return;
    suggestTimer = setTimeout(async () => {
      const r = await jmap([['pigeon:Address/suggest', { prefix: typed }, 'a']]);
      const datalist = $('addresses');
      datalist.replaceChildren();
      const head = e.target.value.includes(',') ? e.target.value.slice(0, e.target.value.lastIndexOf(',') + 1) + ' ' : '';
      for (const a of result(r, 'a').list) datalist.append(new Option(fullAddress(a), head + fullAddress(a)));
    }, 120);
  });
}

let saving = null;
async function saveDraft(quiet) {
  // One save at a time: two at once would each leave a draft behind.
  if (saving) await saving;
  saving = (async () => {
    try {
      const r = await jmap([['Email/set', { create: { d: composition() } }, 's']]);
      const s = result(r, 's');
      const failure = setFailure(s, 'd');
      if (failure) { $('c-status').textContent = 'Draft not saved: ' + failure; return; }
      draft.id = s.created.d.id;
      draft.dirty = false;
      $('c-status').textContent = (quiet ? 'Draft saved automatically ' : 'Draft saved ') + new Date().toLocaleTimeString();
    } catch (e) {
      $('c-status').textContent = 'Draft not saved: ' + e.message;
    }
  })();
  await saving;
  saving = null;
}

$('c-save').addEventListener('click', () => saveDraft(false));
$('c-close').addEventListener('click', () => { clearInterval(draft.timer); $('composer').close(); });
$('composer').addEventListener('close', () => clearInterval(draft.timer));

$('c-send').addEventListener('click', async () => {
  if (draft.attachments.some((a) => !a.blobId)) { $('c-status').textContent = 'Wait for the uploads to finish.'; return; }
  clearInterval(draft.timer);
  if (saving) await saving;
  $('c-status').textContent = 'Sending…';
  let failure;
  try {
    const r = await jmap([['EmailSubmission/set', { create: { s: composition() } }, 'x']]);
    failure = setFailure(result(r, 'x'), 's');
  } catch (e) {
    failure = e.message;
  }
  if (failure) {
    $('c-status').textContent = 'Not sent: ' + failure;
    draft.timer = setInterval(() => { if (draft.dirty) saveDraft(true); }, 5000);
    return;
  }
  $('composer').close();
  $('list-status').textContent = 'Message sent.';
  loadMailboxes(); loadList();
});

function renderAttachments() {
  const ul = $('c-attachments');
  ul.replaceChildren();
  for (const a of draft.attachments) {
    const li = document.createElement('li');
    li.textContent = `${a.name} (${Math.max(1, Math.round(a.size / 1024))} KB) `;
    if (!a.blobId) {
      const bar = document.createElement('progress');
      bar.max = 1; bar.value = a.progress || 0;
      li.append(bar);
    }
    const remove = document.createElement('button');
    remove.type = 'button'; remove.textContent = '×'; remove.title = 'Remove';
    remove.addEventListener('click', () => {
      draft.attachments = draft.attachments.filter((x) => x !== a);
      draft.dirty = true;
      renderAttachments();
      // An upload of this session is freed at once (a forwarded part is not an upload).
      if (a.blobId && a.blobId.startsWith('u')) jmap([['pigeon:Upload/destroy', { blobIds: [a.blobId] }, 'u']]).catch(() => null);
    });
    li.append(remove);
    ul.append(li);
  }
}

$('c-files').addEventListener('change', (e) => {
  for (const file of e.target.files) upload(file);
  e.target.value = '';
});

function upload(file) {
  const entry = { name: file.name, type: file.type || 'application/octet-stream', size: file.size, blobId: null, progress: 0 };
  draft.attachments.push(entry);
  renderAttachments();
  const xhr = new XMLHttpRequest();
  xhr.open('POST', `/jmap/upload/${state.account}/?name=${encodeURIComponent(file.name)}`);
  xhr.setRequestHeader('X-CSRF-Token', state.csrf);
  xhr.setRequestHeader('Content-Type', entry.type);
  xhr.upload.addEventListener('progress', (p) => { if (p.lengthComputable) { entry.progress = p.loaded / p.total; renderAttachments(); } });
  xhr.addEventListener('load', () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 201) { entry.blobId = body.blobId; draft.dirty = true; }
    else {
      draft.attachments = draft.attachments.filter((x) => x !== entry);
      $('c-status').textContent = `${file.name}: ${body.error || 'upload failed (' + xhr.status + ')'}`;
    }
    renderAttachments();
  });
  xhr.addEventListener('error', () => {
    draft.attachments = draft.attachments.filter((x) => x !== entry);
    $('c-status').textContent = `${file.name}: upload failed`;
    renderAttachments();
  });
  xhr.send(file);
}

$('compose').addEventListener('click', () => openComposer('New message', {}));

function quote(email) {
  const when = dateFormat.format(new Date(email.sentAt || email.receivedAt));
  const text = (email.body && email.body.text) || '';
  return `\n\nOn ${when}, ${who(email.from)} wrote:\n` + text.split('\n').map((l) => '> ' + l).join('\n');
}

function prefixed(prefix, subject) {
  return subject.toLowerCase().startsWith(prefix.toLowerCase()) ? subject : `${prefix} ${subject}`;
}

function focusedEmail() { return state.open && state.emails.get(state.open); }

function reply(all) {
  const e = focusedEmail();
  if (!e) return;
  const to = (e.replyTo.length ? e.replyTo : e.from).map(fullAddress);
  let cc = [];
  if (all) {
    const me = state.username.toLowerCase();
    const others = [...e.to, ...e.cc].filter((a) => a.email.toLowerCase() !== me && !to.includes(fullAddress(a)));
    cc = others.map(fullAddress);
  }
  openComposer(all ? 'Reply all' : 'Reply', {
    to: to.join(', '), cc: cc.join(', '), subject: prefixed('Re:', e.subject), body: quote(e),
    draft: { replyingTo: e.id, inReplyTo: e.messageId[0] || null, references: [...e.references, ...e.messageId] },
  });
}

function forward() {
  const e = focusedEmail();
  if (!e) return;
  const when = dateFormat.format(new Date(e.sentAt || e.receivedAt));
  const header = `\n\n---------- Forwarded message ----------\nFrom: ${e.from.map(fullAddress).join(', ')}\nDate: ${when}\nSubject: ${e.subject}\nTo: ${e.to.map(fullAddress).join(', ')}\n\n`;
  const attachments = ((e.body && e.body.attachments) || []).map((a) => ({ blobId: a.blobId, name: a.name || 'attachment', type: a.type, size: a.size }));
  openComposer('Forward', {
    subject: prefixed('Fwd:', e.subject), body: header + ((e.body && e.body.text) || ''),
    draft: { attachments, references: [...e.references, ...e.messageId] },
  });
}

// A saved draft opens in the composer again; saving or sending replaces it.
function editDraft() {
  const e = focusedEmail();
  if (!e) return;
  const attachments = ((e.body && e.body.attachments) || []).map((a) => ({ blobId: a.blobId, name: a.name || 'attachment', type: a.type, size: a.size }));
  openComposer('Draft', {
    to: e.to.map(fullAddress).join(', '), cc: e.cc.map(fullAddress).join(', '),
    subject: e.subject, body: (e.body && e.body.text) || '',
    draft: { id: e.id, attachments, inReplyTo: e.inReplyTo[0] || null, references: e.references },
  });
  // Carry on where the text ends.
  const end = $('c-body').value.length;
  $('c-body').setSelectionRange(end, end);
}

$('edit-draft').addEventListener('click', editDraft);
$('reply').addEventListener('click', () => reply(false));
$('reply-all').addEventListener('click', () => reply(true));
$('forward').addEventListener('click', forward);
$('menu').addEventListener('click', () => $('app').classList.toggle('show-folders'));

// ---------- keyboard ----------
document.addEventListener('keydown', (e) => {
  if ($('app').hidden || $('composer').open) return;
  const tag = document.activeElement && document.activeElement.tagName;
  if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || e.ctrlKey || e.metaKey || e.altKey) return;
  const index = state.ids.indexOf(state.open);
  const keys = {
    j: () => state.ids[index + 1] && openEmail(state.ids[index + 1]),
    k: () => index > 0 && openEmail(state.ids[index - 1]),
    c: () => openComposer('New message', {}),
    r: () => reply(false), a: () => reply(true), f: forward,
    s: () => $('act-flag').click(), u: () => $('act-unread').click(),
    '#': deleteSelected, Delete: deleteSelected,
    '/': () => $('search-text').focus(),
    Escape: closeReader,
  };
  const action = keys[e.key];
  if (action) { e.preventDefault(); action(); }
});

boot();

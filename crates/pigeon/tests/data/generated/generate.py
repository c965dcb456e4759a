#!/usr/bin/env python3
"""Writes the generated MIME corpus: NNN.eml plus expected.json, the decoded content of every
leaf part by IMAP part number (sha256 of the bytes after Content-Transfer-Encoding decoding) and
the UTF-8 text the user agent must show. Run from this directory; the output is committed."""
import base64, hashlib, json, os
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.mime.application import MIMEApplication
from email.mime.image import MIMEImage
from email.mime.message import MIMEMessage
from email import policy

PNG = bytes.fromhex('89504e470d0a1a0a0000000d4948445200000001000000010806000000') + bytes(range(64))
BLOB = bytes((i * 37 + i // 7) % 256 for i in range(20000))

TEXTS = {
    'utf-8': '电子邮件：你好，世界！Ünïcödé ✓\n第二行\n',
    'gb2312': '电子邮件：你好，世界！\n简体中文测试\n',
    'gbk': '电子邮件：你好，世界！\n镕镕\n',
    'gb18030': '电子邮件：你好，世界！€\n',
    'big5': '電子郵件：你好，世界！\n繁體中文測試\n',
    'iso-2022-jp': '電子メール：こんにちは、世界！\nテスト\n',
    'shift_jis': 'こんにちは、世界！\n',
    'euc-kr': '전자 메일: 안녕하세요!\n',
    'iso-8859-1': 'Voilà, ça marche. Größe: 5°\n',
    'windows-1252': 'Smart “quotes” – dash … and €uro\n',
    'koi8-r': 'Привет, мир!\n',
    'iso-8859-7': 'Γειά σου Κόσμε!\n',
}

def leaves(msg, prefix=''):
    """(part number, leaf) for every non-multipart part, in IMAP numbering."""
    if not msg.is_multipart():
        yield (prefix or '1'), msg
        return
    for i, part in enumerate(msg.get_payload(), 1):
        number = f'{prefix}.{i}' if prefix else str(i)
        if part.get_content_type() == 'message/rfc822':
            yield number, None
            inner = part.get_payload()[0]
            yield from leaves(inner, number)
        else:
            yield from leaves(part, number)

def expectation(msg, show_text):
    parts = {}
    for number, leaf in leaves(msg):
        if leaf is None:
            continue
        data = leaf.get_payload(decode=True)
        parts[number] = hashlib.sha256(data).hexdigest()
    return {'parts': parts, 'text': show_text}

messages = []

def add(msg, text):
    messages.append((msg, text))

def headers(m, subject):
    m['From'] = 'Sender <sender@example.org>'
    m['To'] = 'bob@localhost'
    from email.header import Header
    m['Subject'] = Header(subject, 'utf-8')
    m['Date'] = 'Fri, 27 Nov 2026 10:00:00 +0000'
    m['Message-ID'] = f'<gen-{len(messages)}@example.org>'

# Single-part text in many charsets and both transfer encodings.
for charset, text in TEXTS.items():
    for cte in ('base64', 'quoted-printable'):
        if charset == 'iso-2022-jp' and cte == 'quoted-printable':
            cte = '7bit'
        m = MIMEText(text, 'plain', charset)
        if m['Content-Transfer-Encoding'] != cte:
            payload = text.encode(charset)
            del m['Content-Transfer-Encoding']
            if cte == 'base64':
                m.set_payload(base64.encodebytes(payload).decode())
            elif cte == 'quoted-printable':
                import quopri
                m.set_payload(quopri.encodestring(payload).decode())
            else:
                m.set_payload(payload.decode('ascii'))
            m['Content-Transfer-Encoding'] = cte
        # Python relabels some charsets (shift_jis as iso-2022-jp); say what the bytes are.
        m.replace_header('Content-Type', f'text/plain; charset="{charset}"')
        headers(m, f'{charset} {cte} 测试')
        add(m, text)

# Quoted-printable with soft breaks on a long line.
long_line = ('Un très long paragraphe en français, ' * 12) + 'fin.\n'
m = MIMEText(long_line, 'plain', 'utf-8')
del m['Content-Transfer-Encoding']
import quopri
m.set_payload(quopri.encodestring(long_line.encode()).decode())
m['Content-Transfer-Encoding'] = 'quoted-printable'
headers(m, 'soft breaks')
add(m, long_line)

# multipart/alternative inside multipart/mixed, an inline cid: image in multipart/related,
# a binary attachment with an RFC 2231 name.
outer = MIMEMultipart('mixed')
headers(outer, 'Structure: 电子邮件 with everything')
related = MIMEMultipart('related')
alt = MIMEMultipart('alternative')
alt.attach(MIMEText(TEXTS['utf-8'], 'plain', 'utf-8'))
alt.attach(MIMEText('<p>电子邮件 <img src="cid:img1@gen"></p>', 'html', 'utf-8'))
related.attach(alt)
img = MIMEImage(PNG, 'png')
img.add_header('Content-ID', '<img1@gen>')
img.add_header('Content-Disposition', 'inline', filename='pixel.png')
related.attach(img)
outer.attach(related)
att = MIMEApplication(BLOB, 'octet-stream')
att.add_header('Content-Disposition', 'attachment', filename=('utf-8', '', 'rapport annuel – 年度报告 2026.bin'))
outer.attach(att)
add(outer, TEXTS['utf-8'])

# A message/rfc822 attachment holding its own multipart.
inner = MIMEMultipart('mixed')
headers(inner, 'inner message')
inner.attach(MIMEText('The forwarded text.\n', 'plain', 'utf-8'))
inner.attach(MIMEApplication(b'inner attachment bytes\x00\x01\x02', 'octet-stream'))
outer = MIMEMultipart('mixed')
headers(outer, 'Fwd: inner message')
outer.attach(MIMEText('See the attached message.\n', 'plain', 'utf-8'))
outer.attach(MIMEMessage(inner))
add(outer, 'See the attached message.\n')

# Several attachments of different types and encodings.
for n in range(3):
    outer = MIMEMultipart('mixed')
    headers(outer, f'attachments {n}')
    outer.attach(MIMEText(f'Body {n}\n', 'plain', 'utf-8'))
    for k in range(n + 2):
        data = bytes((i * (k + 3) + n) % 256 for i in range(3000 * (k + 1)))
        a = MIMEApplication(data, 'octet-stream')
        a.add_header('Content-Disposition', 'attachment', filename=f'file-{n}-{k}.dat')
        outer.attach(a)
    t = MIMEText('a text attachment\nline 2\n', 'plain', 'iso-8859-1')
    t.add_header('Content-Disposition', 'attachment', filename='notes.txt')
    outer.attach(t)
    add(outer, f'Body {n}\n')

# 8bit UTF-8 text.
import email as email_pkg
m = email_pkg.message_from_bytes(b'Content-Type: text/plain; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
                                 b'Content-Transfer-Encoding: 8bit\r\n\r\n' + TEXTS['utf-8'].encode('utf-8'))
headers(m, '8bit text')
add(m, TEXTS['utf-8'])

# HTML only, in Big5: the user agent shows it as text.
m = MIMEText('<html><body><p>電子郵件</p><p>繁體 &amp; 測試</p></body></html>', 'html', 'big5')
headers(m, 'html only big5')
add(m, '電子郵件\n繁體 & 測試\n')

# Text in ISO-8859-1 quoted-printable, HTML in UTF-8 base64.
alt = MIMEMultipart('alternative')
headers(alt, 'mixed charsets alternative')
alt.attach(MIMEText(TEXTS['iso-8859-1'], 'plain', 'iso-8859-1'))
h = MIMEText('<p>Voilà 电子</p>', 'html', 'utf-8')
alt.attach(h)
add(alt, TEXTS['iso-8859-1'])

# An attachment named with an RFC 2047 encoded word (as some mailers do).
outer = MIMEMultipart('mixed')
headers(outer, 'encoded-word file name')
outer.attach(MIMEText('see attachment\n', 'plain', 'utf-8'))
a = MIMEApplication(BLOB[:5000], 'octet-stream')
a.add_header('Content-Disposition', 'attachment', filename='=?utf-8?b?5oql5ZGKLnBkZg==?=')
outer.attach(a)
add(outer, 'see attachment\n')

# A forwarded message inside a forwarded message.
level2 = MIMEMultipart('mixed')
headers(level2, 'level 2')
level2.attach(MIMEText('deepest text\n', 'plain', 'utf-8'))
level1 = MIMEMultipart('mixed')
headers(level1, 'level 1')
level1.attach(MIMEText('middle text\n', 'plain', 'utf-8'))
level1.attach(MIMEMessage(level2))
outer = MIMEMultipart('mixed')
headers(outer, 'Fwd: Fwd: deep')
outer.attach(MIMEText('outer text\n', 'plain', 'utf-8'))
outer.attach(MIMEMessage(level1))
add(outer, 'outer text\n')

os.makedirs('.', exist_ok=True)
expected = {}
for i, (m, text) in enumerate(messages):
    name = f'{i:03}.eml'
    raw = m.as_bytes(policy=policy.compat32.clone(linesep='\r\n'))
    with open(name, 'wb') as f:
        f.write(raw)
    # Expectations from the bytes as written (line ends in QP text are CRLF on the wire).
    import email as email_pkg
    expected[name] = expectation(email_pkg.message_from_bytes(raw), text)

# Hand-written edge cases (files h*.eml, written below) are checked for survival and text only.
hand = {
    'h00.eml': (b'From: a@example.org\r\nTo: bob@localhost\r\nSubject: =?utf-8?q?split_?= =?iso-8859-1?q?caf=E9?= =?utf-8?b?IOeUteWtkA==?=\r\n'
                # 1.5 KB of one field, folded: a line may not exceed 998 octets (RFC 5322 §2.1.1).
                b'X-Long: ' + b'\r\n '.join(b' '.join(b'word%d' % i for i in range(j, j + 20)) for j in range(0, 200, 20)) + b'\r\n'
                b'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nEncoded words across charsets.\r\n',
                'Encoded words across charsets.\n'),
    'h01.eml': (b'From: a@example.org\r\nTo: bob@localhost\r\nSubject: missing final boundary\r\nMIME-Version: 1.0\r\n'
                b'Content-Type: multipart/mixed; boundary="zz"\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n'
                b'--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n',
                'first part\n'),
    'h02.eml': (b'From: a@example.org\r\nTo: bob@localhost\r\nSubject: bad base64\r\nMIME-Version: 1.0\r\n'
                b'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n5L2g5aW9!!!not*base64@@\r\n',
                None),
    'h03.eml': (b'From: a@example.org\r\nTo: bob@localhost\r\nSubject: rfc2231 continuations\r\nMIME-Version: 1.0\r\n'
                b'Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b\r\n'
                b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n filename*0*=utf-8''%E5%B9%B4%E5%BA%A6;\r\n filename*1*=%E6%8A%A5%E5%91%8A;\r\n filename*2=.pdf\r\n"
                b'Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n',
                'body\n'),
    'h04.eml': (b'From: a@example.org\r\nTo: bob@localhost\r\nSubject: no MIME at all\r\n\r\nPlain old body.\r\n', 'Plain old body.\n'),
    'h05.eml': (b'From: a@example.org\r\nTo: bob@localhost\r\nSubject: unknown charset\r\nMIME-Version: 1.0\r\n'
                b'Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nstill readable\r\n', None),
}
for name, (raw, text) in hand.items():
    with open(name, 'wb') as f:
        f.write(raw)
    expected[name] = {'parts': {}, 'text': text}

with open('expected.json', 'w') as f:
    json.dump(expected, f, indent=1, ensure_ascii=False, sort_keys=True)
print(len(expected), 'messages')

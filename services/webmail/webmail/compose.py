"""Building the messages the webmail writes: new mail, replies, forwards, drafts.

Everything here is pure (no database, no network) so that it is tested on its own: the view gathers the
form and the original message, this module checks the fields and produces an RFC 5322 message with the
standard library (`EmailMessage`, `policy.default`, which folds and RFC 2047-encodes non-ASCII names and
subjects itself).

What it refuses, with a French message (`ComposeError`): a CR, LF or other control character in any
field that becomes a header (header injection), an address that does not parse, too many recipients, and
attachments over the size limit. Bcc is kept in drafts (so a resumed draft still has it) but never in the
message sent: the view passes Bcc recipients to the SMTP envelope only.
"""

from __future__ import annotations

import datetime as dt
import email
import email.header
import email.policy
import email.utils
import html
import mimetypes
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage, Message

import nh3

from webmail.french import long_date

#: Recipients of one message (To, Cc and Bcc together): ingest takes at most INGEST_MAX_RECIPIENTS.
MAX_RECIPIENTS = 100
MAX_SUBJECT = 500
MAX_BODY_CHARS = 2_000_000
#: A long thread's References is cut to its first and last ids (RFC 5322 §3.6.4 allows trimming).
MAX_REFERENCES = 20

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\u0085]")
_REPLY_PREFIX = re.compile(r"^\s*(re|ré|réf|ref|aw|sv)\s*(\[\d+\])?\s*:\s*", re.I)
_FORWARD_PREFIX = re.compile(r"^\s*(tr|fwd?|wg|rv|transf)\s*:\s*", re.I)
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


class ComposeError(ValueError):
    """A field refused; the message is French and meant for the user."""


@dataclass(frozen=True)
class Recipient:
    """A display name and an address, as typed in a To/Cc/Bcc field."""

    name: str
    address: str

    def formatted(self) -> str:
        """`Name <address>` (or the bare address) for a form field."""
        return email.utils.formataddr((self.name, self.address)) if self.name else self.address


@dataclass(frozen=True)
class AttachmentData:
    """An attachment's bytes with its name and type."""

    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Composition:
    """What the compose form holds; `build_message` turns it into a message."""

    to: list[Recipient] = field(default_factory=list)
    cc: list[Recipient] = field(default_factory=list)
    bcc: list[Recipient] = field(default_factory=list)
    subject: str = ""
    body: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    attachments: list[AttachmentData] = field(default_factory=list)

    @property
    def recipients(self) -> list[str]:
        """Every envelope recipient, To then Cc then Bcc, each once."""
        seen: dict[str, None] = {}
        for person in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(person.address.lower(), None)
        return list(seen)


# --- checking fields ---------------------------------------------------------------------------------


def check_header_text(value: str, label: str, limit: int = MAX_SUBJECT) -> str:
    """`value` for a header, refused if it holds a line break or a control character."""
    if _CONTROL.search(value or ""):
        raise ComposeError(f"{label} : les retours à la ligne et caractères de contrôle sont interdits.")
    value = (value or "").strip()
    if len(value) > limit:
        raise ComposeError(f"{label} : {limit} caractères au plus.")
    return value


def parse_recipients(value: str, label: str) -> list[Recipient]:
    """The recipients typed in a field (comma or semicolon separated, `Name <address>` or an address).

    Refuses line breaks (header injection), malformed addresses and non-ASCII addresses (SMTPUTF8
    is not used by the webmail), with the offending entry in the French message.
    """
    if _CONTROL.search(value or ""):
        raise ComposeError(f"{label} : les retours à la ligne et caractères de contrôle sont interdits.")
    text = (value or "").replace(";", ",").strip()
    if not text:
        return []
    found: list[Recipient] = []
    for chunk in _split_addresses(text):
        chunk = chunk.strip()
        if not chunk:
            continue
        name, address = email.utils.parseaddr(chunk)
        address = address.strip()
        if not address or not _ADDRESS.match(address) or not address.isascii():
            raise ComposeError(f"{label} : adresse invalide « {chunk} ».")
        found.append(Recipient(name.strip(), address.lower()))
    return found


def _split_addresses(text: str) -> Iterator[str]:
    """Split on commas outside quotes and angle brackets ("Martin, Camille" <c@x> is one address)."""
    depth, quoted, start = 0, False, 0
    for index, char in enumerate(text):
        if char == '"' and (index == 0 or text[index - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char == "<":
            depth += 1
        elif not quoted and char == ">":
            depth = max(0, depth - 1)
        elif char == "," and not quoted and depth == 0:
            yield text[start:index]
            start = index + 1
    yield text[start:]


def check_composition(
    composition: Composition, max_attachment_bytes: int, *, for_sending: bool
) -> Composition:
    """Refuse what cannot be sent (or saved): no recipient, too many, attachments too large."""
    if for_sending and not composition.recipients:
        raise ComposeError("Indiquez au moins un destinataire.")
    if len(composition.recipients) > MAX_RECIPIENTS:
        raise ComposeError(f"{MAX_RECIPIENTS} destinataires au plus par message.")
    if len(composition.body) > MAX_BODY_CHARS:
        raise ComposeError("Le texte du message est trop long.")
    total = sum(a.size for a in composition.attachments)
    if total > max_attachment_bytes:
        raise ComposeError(
            f"Les pièces jointes dépassent la taille permise ({human_size(max_attachment_bytes)} au total)."
        )
    for attachment in composition.attachments:
        check_header_text(attachment.filename, "Nom de pièce jointe", 255)
    return composition


# --- building ----------------------------------------------------------------------------------------


def new_message_id(mail_domain: str) -> str:
    """A Message-ID on the academy's mail domain."""
    return f"<{uuid.uuid4().hex}@{mail_domain}>"


def _address(recipient: Recipient) -> Address:
    local, _, domain = recipient.address.rpartition("@")
    return Address(display_name=recipient.name, username=local, domain=domain)


def build_message(
    composition: Composition,
    *,
    sender_name: str,
    sender_address: str,
    mail_domain: str,
    include_bcc: bool = False,
    message_id: str | None = None,
    date: dt.datetime | None = None,
) -> EmailMessage:
    """The message for `composition`, From the logged-in user; Bcc only when `include_bcc` (drafts)."""
    msg = EmailMessage(policy=email.policy.default)
    msg["From"] = _address(Recipient(check_header_text(sender_name, "Nom", 200), sender_address))
    if composition.to:
        msg["To"] = [_address(r) for r in composition.to]
    if composition.cc:
        msg["Cc"] = [_address(r) for r in composition.cc]
    if include_bcc and composition.bcc:
        msg["Bcc"] = [_address(r) for r in composition.bcc]
    msg["Subject"] = check_header_text(composition.subject, "Objet")
    msg["Date"] = email.utils.format_datetime(date or dt.datetime.now(dt.UTC))
    msg["Message-ID"] = message_id or new_message_id(mail_domain)
    if composition.in_reply_to:
        msg["In-Reply-To"] = check_header_text(composition.in_reply_to, "En réponse à", 998)
    if composition.references:
        refs = [check_header_text(r, "Références", 998) for r in composition.references]
        msg["References"] = " ".join(refs)
    # quoted-printable: 7-bit clean whatever the text, so no relay ever has to convert it.
    msg.set_content(
        _normalise_body(composition.body), subtype="plain", charset="utf-8", cte="quoted-printable"
    )
    for attachment in composition.attachments:
        maintype, _, subtype = (attachment.content_type or "").partition("/")
        if not maintype or not subtype or _CONTROL.search(attachment.content_type):
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(
            attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename or "sans-nom"
        )
    return msg


def message_bytes(msg: EmailMessage) -> bytes:
    """The message as sent over SMTP and stored: CRLF line endings (ingest refuses bare LF)."""
    return msg.as_bytes(policy=email.policy.SMTP)


def _normalise_body(body: str) -> str:
    # Browsers send CRLF from a textarea; the email package writes its own line endings.
    text = (body or "").replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


# --- replies and forwards ----------------------------------------------------------------------------


def reply_subject(subject: str) -> str:
    """`Re: subject`, without doubling an existing Re:/RE :/Réf."""
    subject = (subject or "").strip()
    if _REPLY_PREFIX.match(subject):
        return "Re: " + _REPLY_PREFIX.sub("", subject, count=1)
    return f"Re: {subject}" if subject else "Re:"


def forward_subject(subject: str) -> str:
    """`TR: subject`, without doubling an existing TR:/Fwd:."""
    subject = (subject or "").strip()
    if _FORWARD_PREFIX.match(subject):
        return "TR: " + _FORWARD_PREFIX.sub("", subject, count=1)
    return f"TR: {subject}" if subject else "TR:"


def french_date(moment: dt.datetime | None) -> str:
    """ "jeudi 26 novembre 2026 à 17:50", in Paris time."""
    return long_date(moment, unknown="date inconnue")


@dataclass(frozen=True)
class Original:
    """What replies and forwards need of the message they answer."""

    sender: Recipient | None
    reply_to: list[Recipient]
    to: list[Recipient]
    cc: list[Recipient]
    subject: str
    date: dt.datetime | None
    message_id: str
    references: list[str]
    text: str
    attachments: list[tuple[int, AttachmentData]]
    bcc: list[Recipient] = field(default_factory=list)
    in_reply_to: str = ""


def _header_addresses(msg: Message, name: str) -> list[Recipient]:
    """The addresses of a header of received mail; names cleaned of control characters, addresses
    that could not be written back safely (non-ASCII, malformed) left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in msg.raw_items():
        if key.lower() != name.lower():
            continue
        try:
            header = msg.policy.header_factory(key, value)  # type: ignore[attr-defined]
            pairs.extend((a.display_name, a.addr_spec) for a in header.addresses)
        except Exception:  # noqa: BLE001 - e.g. an encoded CR LF in a name: the stdlib refuses it
            try:
                decoded = str(email.header.make_header(email.header.decode_header(str(value))))
                pairs.extend(email.utils.getaddresses([_clean(decoded)]))
            except Exception:  # noqa: BLE001, S112 - unreadable: no address from this header
                continue
    found = []
    for display_name, addr in pairs:
        addr = (addr or "").strip()
        if addr.isascii() and _ADDRESS.match(addr):
            found.append(Recipient(_clean(display_name), addr.lower()))
    return found


def _clean(text: str) -> str:
    """A header value of received mail, safe to put back into a header or a form field."""
    return _CONTROL.sub(" ", text or "").strip()


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001
        return ""
    return _clean(str(value)) if value is not None else ""


def parse_original(raw: bytes) -> Original:
    """The parts of a received (or sent, or draft) message that a reply or a forward uses."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    senders = _header_addresses(msg, "From")
    try:
        date_header = msg.get("Date")
        date = date_header.datetime if date_header is not None else None
    except Exception:  # noqa: BLE001
        date = None
    message_id = _header(msg, "Message-ID")
    refs = _header(msg, "References").split()
    return Original(
        sender=senders[0] if senders else None,
        reply_to=_header_addresses(msg, "Reply-To"),
        to=_header_addresses(msg, "To"),
        cc=_header_addresses(msg, "Cc"),
        subject=_header(msg, "Subject"),
        date=date,
        message_id=message_id if message_id.startswith("<") else "",
        references=[r for r in refs if r.startswith("<") and r.endswith(">")],
        text=body_text(msg),
        attachments=list(attachments_of(msg)),
        bcc=_header_addresses(msg, "Bcc"),
        in_reply_to=_header(msg, "In-Reply-To"),
    )


def body_text(msg: Message) -> str:
    """The message's text: its text/plain body, or its HTML body reduced to text."""
    try:
        part = msg.get_body(preferencelist=("plain", "html"))  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        part = None
    if part is None:
        return ""
    try:
        content = part.get_content()
    except Exception:  # noqa: BLE001 - unknown charset or broken encoding
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", errors="replace")
    if part.get_content_subtype() == "html":
        content = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</li>|</tr>", "\n", content)
        content = html.unescape(nh3.clean(content, tags=set()))
        content = re.sub(r"[ \t]+\n", "\n", content)
        content = re.sub(r"\n{3,}", "\n\n", content).strip() + "\n"
    return content.replace("\r\n", "\n")


def attachments_of(msg: Message) -> Iterator[tuple[int, AttachmentData]]:
    """(part index, attachment) of each attachment, with the indexes `common.mailstore.summarize` uses."""
    for index, part in enumerate(msg.walk()):
        if part.is_multipart():
            continue
        try:
            filename = part.get_filename()
            disposition = part.get_content_disposition()
        except Exception:  # noqa: BLE001, S112 - a malformed part is not an attachment we can offer
            continue
        if filename or disposition == "attachment":
            try:
                data = part.get_payload(decode=True) or b""
            except Exception:  # noqa: BLE001
                data = b""
            yield index, AttachmentData(_clean(filename or "sans-nom"), part.get_content_type(), data)


def attachment_part(raw: bytes, index: int) -> AttachmentData | None:
    """The attachment at part `index` of a raw message, or None."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for found, attachment in attachments_of(msg):
        if found == index:
            return attachment
    return None


def quote(text: str, original: Original) -> str:
    """The reply body: an empty line to write in, then "Le …, X a écrit :" and the quoted text."""
    who = original.sender.name or original.sender.address if original.sender else "quelqu'un"
    lines = text.rstrip("\n").split("\n") if text.strip() else []
    quoted = "\n".join(("> " + line) if line and not line.startswith(">") else (">" + line) for line in lines)
    return f"\n\nLe {french_date(original.date)}, {who} a écrit :\n{quoted}\n"


def references_for(original: Original) -> list[str]:
    """The References of a reply: the original's References plus its Message-ID, trimmed."""
    refs = [*original.references]
    if original.message_id and original.message_id not in refs:
        refs.append(original.message_id)
    if len(refs) > MAX_REFERENCES:
        refs = [refs[0], *refs[-(MAX_REFERENCES - 1) :]]
    return refs


def reply(original: Original, me: Iterable[str], *, reply_all: bool) -> Composition:
    """A reply (to the sender, or to everyone but me) quoting the original."""
    mine = {m.lower() for m in me}
    primary = original.reply_to or ([original.sender] if original.sender else [])
    to = _unique([r for r in primary if r.address not in mine])
    if not to and original.sender is not None and not reply_all:
        to = [original.sender]  # replying to my own message: to myself, as other clients do
    cc: list[Recipient] = []
    if reply_all:
        if not to:
            # My own sent message: "reply all" goes to its recipients.
            to = _unique([r for r in original.to if r.address not in mine])
        taken = {r.address for r in to} | mine
        cc = _unique([r for r in (*original.to, *original.cc) if r.address not in taken])
    return Composition(
        to=to,
        cc=cc,
        subject=reply_subject(original.subject),
        body=quote(original.text, original),
        in_reply_to=original.message_id,
        references=references_for(original),
    )


def resume(draft: Original) -> Composition:
    """The composition a saved draft holds (its attachments are added by the view)."""
    return Composition(
        to=draft.to,
        cc=draft.cc,
        bcc=draft.bcc,
        subject=draft.subject,
        body=draft.text,
        in_reply_to=draft.in_reply_to if draft.in_reply_to.startswith("<") else "",
        references=draft.references,
    )


def forward(original: Original) -> Composition:
    """A forward: the original's headers and text in the body, its attachments kept (the view adds them)."""
    lines = ["", "", "-------- Message transféré --------"]
    if original.sender:
        lines.append(f"De : {original.sender.formatted()}")
    lines.append(f"Date : {french_date(original.date)}")
    lines.append(f"Objet : {original.subject}")
    if original.to:
        lines.append("À : " + ", ".join(r.formatted() for r in original.to))
    if original.cc:
        lines.append("Cc : " + ", ".join(r.formatted() for r in original.cc))
    lines.append("")
    body = "\n".join(lines) + "\n" + original.text
    return Composition(subject=forward_subject(original.subject), body=body)


def _unique(people: Iterable[Recipient]) -> list[Recipient]:
    seen: set[str] = set()
    out = []
    for person in people:
        if person.address not in seen:
            seen.add(person.address)
            out.append(person)
    return out


def format_recipients(people: Iterable[Recipient]) -> str:
    """A To/Cc/Bcc field's text."""
    return ", ".join(p.formatted() for p in people)


def guess_type(filename: str, given: str | None) -> str:
    """The content type of an upload: the browser's, or guessed from the name."""
    if given and "/" in given and not _CONTROL.search(given) and given != "application/octet-stream":
        return given.strip().lower()
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def human_size(size: int) -> str:
    """ "25 Mo", "12 ko" """
    if size >= 1024 * 1024:
        value = size / (1024 * 1024)
        return f"{value:.0f} Mo" if value >= 10 or value.is_integer() else f"{value:.1f} Mo".replace(".", ",")
    if size >= 1024:
        return f"{size // 1024} ko"
    return f"{size} o"

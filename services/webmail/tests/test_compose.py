"""Building the webmail's messages: fields checked (no header injection), replies, reply all, forwards,
attachments, non-ASCII names and subjects, drafts that keep Bcc."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage

import pytest

from webmail.compose import (
    AttachmentData,
    ComposeError,
    Composition,
    Recipient,
    attachment_part,
    build_message,
    check_composition,
    check_header_text,
    forward,
    forward_subject,
    message_bytes,
    parse_original,
    parse_recipients,
    reply,
    reply_subject,
    resume,
)

DOMAIN = "ac-montpellier.fr"
CAMILLE = f"camille.martin@{DOMAIN}"
LOUIS = f"louis.garcia@{DOMAIN}"
ALICE = f"alice.dubois@{DOMAIN}"


def build(composition: Composition, **kwargs) -> EmailMessage:
    msg = build_message(
        composition, sender_name="Camille Martin", sender_address=CAMILLE, mail_domain=DOMAIN, **kwargs
    )
    # Round trip through bytes, as ingest and delivery see it.
    return email.message_from_bytes(message_bytes(msg), policy=email.policy.default)


def received(**headers) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", f"Louis Garcia <{LOUIS}>")
    msg["To"] = headers.pop("To", f"Camille Martin <{CAMILLE}>, {ALICE}")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    if "Subject" not in msg:
        msg["Subject"] = "Conseil de classe"
    msg["Date"] = "Thu, 26 Nov 2026 16:50:00 +0000"
    msg["Message-ID"] = "<original@ac-montpellier.fr>"
    msg.set_content("Bonjour,\n\nLe conseil a lieu jeudi.\n")
    return message_bytes(msg)


# --- fields ------------------------------------------------------------------------------------------


def test_recipients_parse_names_commas_and_semicolons():
    people = parse_recipients(f'"Martin, Camille" <{CAMILLE}>; Louis Garcia <{LOUIS}>, {ALICE.upper()}', "À")
    assert people == [
        Recipient("Martin, Camille", CAMILLE),
        Recipient("Louis Garcia", LOUIS),
        Recipient("", ALICE),
    ]
    assert parse_recipients("  ", "À") == []


@pytest.mark.parametrize(
    "value",
    [
        f"{LOUIS}\r\nBcc: victime@example.org",
        f"{LOUIS}\nBcc: victime@example.org",
        f"Louis\r <{LOUIS}>",
        f"{LOUIS}\x00",
        f"Louis\u2028Garcia <{LOUIS}>",
    ],
)
def test_line_breaks_in_recipients_are_refused(value):
    with pytest.raises(ComposeError, match="retours à la ligne"):
        parse_recipients(value, "À")


@pytest.mark.parametrize("value", ["pas-une-adresse", "a@", "@b.fr", "a b@c.fr", "josé@exemple.fr", "<>"])
def test_malformed_addresses_are_refused_with_the_entry(value):
    with pytest.raises(ComposeError, match="adresse invalide"):
        parse_recipients(value, "À")


@pytest.mark.parametrize("subject", ["Bonjour\r\nBcc: x@example.org", "Bonjour\nX-Injected: 1", "a\rb"])
def test_line_breaks_in_the_subject_are_refused(subject):
    with pytest.raises(ComposeError, match="Objet"):
        check_header_text(subject, "Objet")
    with pytest.raises(ComposeError):
        build(Composition(to=[Recipient("", LOUIS)], subject=subject))


def test_a_line_break_in_an_attachment_name_is_refused():
    composition = Composition(
        attachments=[AttachmentData("a\r\nContent-Type: text/html", "text/plain", b"x")]
    )
    with pytest.raises(ComposeError):
        check_composition(composition, 1000, for_sending=False)


def test_limits_recipients_and_attachment_size():
    with pytest.raises(ComposeError, match="au moins un destinataire"):
        check_composition(Composition(), 1000, for_sending=True)
    check_composition(Composition(), 1000, for_sending=False)  # a draft may have none
    big = Composition(to=[Recipient("", LOUIS)], attachments=[AttachmentData("a.bin", "", b"x" * 1001)])
    with pytest.raises(ComposeError, match="taille permise"):
        check_composition(big, 1000, for_sending=True)
    many = Composition(to=[Recipient("", f"p{n}@{DOMAIN}") for n in range(101)])
    with pytest.raises(ComposeError, match="100 destinataires"):
        check_composition(many, 1000, for_sending=True)


# --- building ----------------------------------------------------------------------------------------


def test_a_new_message_with_non_ascii_names_subject_and_attachment():
    composition = Composition(
        to=[Recipient("Louis Garcìa", LOUIS)],
        cc=[Recipient("Alice Dubois-Lefèvre", ALICE)],
        bcc=[Recipient("", "secret@example.org")],
        subject="Réunion : ordre du jour — élèves de 3ᵉ",
        body="Bonjour,\r\nvoici l'ordre du jour.\r\nÀ jeudi.",
        attachments=[AttachmentData("compte-rendu é.pdf", "application/pdf", b"%PDF-1.4 \x00\xff")],
    )
    raw = message_bytes(
        build_message(composition, sender_name="Camille Martin", sender_address=CAMILLE, mail_domain=DOMAIN)
    )
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only: ingest refuses bare LF
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.isascii()  # everything encoded (RFC 2047 / base64 / quoted-printable)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["From"].addresses[0].display_name == "Camille Martin"
    assert msg["From"].addresses[0].addr_spec == CAMILLE
    assert msg["To"].addresses[0].display_name == "Louis Garcìa"
    assert msg["Cc"].addresses[0].display_name == "Alice Dubois-Lefèvre"
    assert msg["Bcc"] is None  # never in a message sent
    assert msg["Subject"] == "Réunion : ordre du jour — élèves de 3ᵉ"
    assert msg["Message-ID"].endswith(f"@{DOMAIN}>")
    assert msg["Date"].datetime.tzinfo is not None
    assert msg["User-Agent"] is None and msg["X-Mailer"] is None
    assert (
        msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        == "Bonjour,\nvoici l'ordre du jour.\nÀ jeudi.\n"
    )
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == "compte-rendu é.pdf"
    assert part.get_content_type() == "application/pdf"
    assert part.get_content() == b"%PDF-1.4 \x00\xff"
    assert composition.recipients == [LOUIS, ALICE, "secret@example.org"]


def test_a_draft_keeps_bcc_and_resumes_as_it_was():
    composition = Composition(
        to=[Recipient("Louis Garcia", LOUIS)],
        bcc=[Recipient("", ALICE)],
        subject="Brouillon",
        body="Texte en cours",
        in_reply_to="<original@ac-montpellier.fr>",
        references=["<a@x>", "<original@ac-montpellier.fr>"],
        attachments=[AttachmentData("notes.txt", "text/plain", b"notes\n")],
    )
    raw = message_bytes(
        build_message(
            composition, sender_name="Camille", sender_address=CAMILLE, mail_domain=DOMAIN, include_bcc=True
        )
    )
    draft = parse_original(raw)
    resumed = resume(draft)
    assert resumed.to == composition.to and resumed.bcc == composition.bcc
    assert resumed.subject == "Brouillon"
    assert resumed.body == "Texte en cours\n"
    assert resumed.in_reply_to == "<original@ac-montpellier.fr>"
    assert resumed.references == ["<a@x>", "<original@ac-montpellier.fr>"]
    [(index, _attachment)] = draft.attachments
    assert attachment_part(raw, index) == AttachmentData("notes.txt", "text/plain", b"notes\n")


# --- replies and forwards ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Conseil", "Re: Conseil"),
        ("Re: Conseil", "Re: Conseil"),
        ("RE : Conseil", "Re: Conseil"),
        ("re:Conseil", "Re: Conseil"),
        ("Réf : Conseil", "Re: Conseil"),
        ("TR: Conseil", "Re: TR: Conseil"),
        ("", "Re:"),
    ],
)
def test_reply_subjects_are_not_doubled(subject, expected):
    assert reply_subject(subject) == expected


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("Conseil", "TR: Conseil"), ("TR: Conseil", "TR: Conseil"), ("Fwd: Conseil", "TR: Conseil"),
     ("tr :Conseil", "TR: Conseil"), ("Re: Conseil", "TR: Re: Conseil")],
)  # fmt: skip
def test_forward_subjects_are_not_doubled(subject, expected):
    assert forward_subject(subject) == expected


def test_a_reply_quotes_and_threads():
    original = parse_original(received(References="<debut@ac-montpellier.fr>"))
    composition = reply(original, [CAMILLE], reply_all=False)
    assert composition.to == [Recipient("Louis Garcia", LOUIS)]
    assert composition.cc == []
    assert composition.subject == "Re: Conseil de classe"
    assert composition.in_reply_to == "<original@ac-montpellier.fr>"
    assert composition.references == ["<debut@ac-montpellier.fr>", "<original@ac-montpellier.fr>"]
    # 16:50 UTC on 26 November is 17:50 in Paris
    assert "Le jeudi 26 novembre 2026 à 17:50, Louis Garcia a écrit :\n" in composition.body
    assert "> Bonjour,\n>\n> Le conseil a lieu jeudi.\n" in composition.body
    assert composition.body.startswith("\n\n")  # room to write above the quote

    msg = build(composition)
    assert msg["In-Reply-To"] == "<original@ac-montpellier.fr>"
    assert msg["References"] == "<debut@ac-montpellier.fr> <original@ac-montpellier.fr>"


def test_reply_goes_to_reply_to_when_there_is_one():
    original = parse_original(received(Reply_To="Secrétariat <secretariat@example.org>"))
    assert reply(original, [CAMILLE], reply_all=False).to == [
        Recipient("Secrétariat", "secretariat@example.org")
    ]


def test_reply_all_is_everyone_but_me():
    original = parse_original(received(Cc=f"Camille <{CAMILLE.upper()}>, Dominique <dominique@example.org>"))
    composition = reply(original, [CAMILLE], reply_all=True)
    assert [r.address for r in composition.to] == [LOUIS]
    assert [r.address for r in composition.cc] == [ALICE, "dominique@example.org"]


def test_reply_all_to_my_own_sent_message_goes_to_its_recipients():
    original = parse_original(received(From=f"Camille <{CAMILLE}>", To=f"{LOUIS}, {ALICE}"))
    composition = reply(original, [CAMILLE], reply_all=True)
    assert [r.address for r in composition.to] == [LOUIS, ALICE]
    assert composition.cc == []


def test_a_forward_keeps_the_headers_text_and_attachments():
    msg = EmailMessage()
    msg["From"] = f"Louis Garcia <{LOUIS}>"
    msg["To"] = CAMILLE
    msg["Subject"] = "Emploi du temps"
    msg["Date"] = "Thu, 26 Nov 2026 08:00:00 +0000"
    msg.set_content("Voici le document.\n")
    msg.add_attachment(b"\x89PNG data", maintype="image", subtype="png", filename="edt.png")
    msg.add_attachment("a;b\n1;2\n", subtype="csv", filename="notes.csv")
    original = parse_original(message_bytes(msg))
    composition = forward(original)
    assert composition.subject == "TR: Emploi du temps"
    assert composition.to == [] and composition.in_reply_to == ""
    assert "-------- Message transféré --------" in composition.body
    assert f"De : Louis Garcia <{LOUIS}>" in composition.body
    assert "Objet : Emploi du temps" in composition.body
    assert composition.body.endswith("Voici le document.\n")
    assert [a.filename for _, a in original.attachments] == ["edt.png", "notes.csv"]
    composition.to = [Recipient("", ALICE)]
    composition.attachments = [a for _, a in original.attachments]
    sent = build(composition)
    assert [p.get_filename() for p in sent.iter_attachments()] == ["edt.png", "notes.csv"]
    assert next(sent.iter_attachments()).get_content() == b"\x89PNG data"


def test_an_html_only_original_is_quoted_as_text():
    msg = EmailMessage()
    msg["From"] = LOUIS
    msg["Subject"] = "HTML"
    msg.set_content(
        "<p>Bonjour&nbsp;<b>Camille</b></p><script>alert(1)</script><p>À demain</p>", subtype="html"
    )
    composition = reply(parse_original(message_bytes(msg)), [CAMILLE], reply_all=False)
    assert "> Bonjour\u00a0Camille" in composition.body
    assert "> À demain" in composition.body
    assert "<" not in composition.body.replace("a écrit", "")
    assert "alert" not in composition.body


def test_hostile_headers_of_the_original_do_not_reach_the_reply():
    raw = (
        b"From: =?utf-8?q?Louis=0D=0ABcc=3A_x=40example=2Eorg?= <louis.garcia@ac-montpellier.fr>\r\n"
        b"Subject: =?utf-8?q?Salut=0D=0ABcc=3A_x=40example=2Eorg?=\r\n"
        b"Message-ID: <m@x>\r\n\r\nTexte\r\n"
    )
    composition = reply(parse_original(raw), [CAMILLE], reply_all=False)
    msg = build(composition)
    assert msg["Bcc"] is None
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    # The sender's garbled name cannot add a header; the To field is shown to the user before sending.
    assert len(msg["To"].addresses) == 1
    assert "\n" not in str(msg["To"]) and "\r" not in str(msg["To"])


def test_date_is_given_or_now():
    msg = build(Composition(to=[Recipient("", LOUIS)]), date=dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC))
    assert msg["Date"].datetime == dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)

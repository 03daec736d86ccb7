"""Message rendering: XSS payloads in HTML and text mail never give script-capable output; images,
links, inline parts and attachments are handled as documented in webmail/rendering.py."""

from __future__ import annotations

import base64
import html.parser
import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from webmail import rendering

PAYLOADS = [
    line
    for line in (Path(__file__).resolve().parents[3] / "tests" / "data" / "xss_payloads.txt")
    .read_text(encoding="utf-8")
    .splitlines()
    if line.strip() and not line.startswith("#")
]

FORBIDDEN_TAGS = {
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "svg", "math", "form", "input",
    "button", "textarea", "select", "base", "meta", "link", "animate", "set", "use", "video", "audio",
    "source", "picture", "area", "isindex", "keygen", "template", "noscript", "xmp", "body", "html",
    "details", "marquee", "applet",
}  # fmt: skip
URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "xlink:href",
    "background",
    "poster",
    "srcset",
    "cite",
}


class Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    handle_startendtag = handle_starttag


def tags_of(markup: str) -> list[tuple[str, dict[str, str]]]:
    parser = Collector()
    parser.feed(markup)
    parser.close()
    return parser.tags


def assert_inert(markup: str, *, remote_allowed: bool = False) -> None:
    """No tag, attribute or URL in `markup` can run script, submit, load a remote resource or escape."""
    for tag, attrs in tags_of(markup):
        assert tag not in FORBIDDEN_TAGS, (tag, markup)
        for name, value in attrs.items():
            assert not name.startswith("on"), (name, markup)
            assert name not in {"srcset", "background", "formaction", "action", "xlink:href", "poster"}
            lowered = re.sub(r"[\s\x00-\x1f]", "", value).lower()
            if name in URL_ATTRIBUTES:
                if tag == "img" and name == "src":
                    ok = re.match(r"data:image/(png|gif|jpe?g|webp);base64,", lowered) or (
                        remote_allowed and lowered.startswith(("https:", "http:"))
                    )
                else:
                    ok = lowered.startswith(("https:", "http:", "mailto:"))
                assert ok, (tag, name, value, markup)
            if name == "style":
                assert "url(" not in lowered and "expression" not in lowered and "\\" not in value
                assert "position" not in lowered and "behavior" not in lowered and "binding" not in lowered
            if name == "target":
                assert value == "_blank"
        if tag == "a" and "href" in attrs:
            assert attrs.get("rel") == "noopener noreferrer"
    assert "<script" not in markup.lower()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_html_payloads_are_neutralised(payload):
    clean, _remote = rendering.sanitize_html(payload)
    assert_inert(clean)
    clean_with_images, _ = rendering.sanitize_html(payload, allow_remote_images=True)
    assert_inert(clean_with_images, remote_allowed=True)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_text_payloads_are_shown_as_text(payload):
    markup = str(rendering.text_to_html(payload))
    for tag, attrs in tags_of(markup):
        assert tag == "a", markup
        assert set(attrs) == {"href", "rel", "target"}
        assert attrs["href"].lower().startswith(("http://", "https://", "mailto:"))
    # what the text said is still readable, as text
    assert html.unescape(re.sub(r"<a [^>]*>|</a>", "", markup)) == payload


@pytest.mark.parametrize("payload", PAYLOADS)
def test_whole_messages_with_payloads(payload):
    message = EmailMessage()
    message["Subject"] = "essai"
    message.set_content("texte")
    message.add_alternative(payload, subtype="html")
    body = rendering.body(bytes(message))
    assert body.kind == "html"
    assert_inert(body.content)
    text_only = rendering.body(bytes(message), text_only=True)
    assert text_only.kind == "text"


def test_roundcube_cve_2024_42009_body_attributes_are_dropped():
    payload = (
        '<body title="bgcolor=foo" name="bar style=animation-name:progress-bar-stripes '
        'onanimationstart=alert(origin) foo=bar">Foo</body>'
    )
    clean, _ = rendering.sanitize_html(payload)
    assert clean == "Foo"


def test_roundcube_cve_2020_35730_and_2023_43770_links_in_text_mail():
    # CVE-2020-35730: markup in a text/plain body; CVE-2023-43770: crafted link references in text
    text = (
        'Voir <a href="javascript:alert(1)">ici</a> et [<script>alert(2)</script>] '
        "https://example.org/page?a=1&b=<img>. Fin"
    )
    markup = str(rendering.text_to_html(text))
    assert "<script" not in markup and "<img" not in markup
    assert [a["href"] for t, a in tags_of(markup) if t == "a"] == ["https://example.org/page?a=1&b="]
    assert "&lt;a href=&quot;javascript:alert(1)&quot;&gt;" in markup


def test_remote_images_are_removed_until_allowed():
    source = '<p>Bonjour</p><img src="https://tracker.example/p.gif" alt="logo">'
    blocked, remote = rendering.sanitize_html(source)
    assert remote and "tracker.example" not in blocked and "<img" in blocked
    allowed, remote = rendering.sanitize_html(source, allow_remote_images=True)
    assert remote and 'src="https://tracker.example/p.gif"' in allowed


def test_links_open_in_a_new_tab_without_referrer():
    clean, _ = rendering.sanitize_html('<a href="https://example.org/">lien</a>')
    [(_tag, attrs)] = tags_of(clean)
    assert attrs == {"href": "https://example.org/", "target": "_blank", "rel": "noopener noreferrer"}


def test_harmless_style_is_kept_and_dangerous_declarations_dropped():
    clean, _ = rendering.sanitize_html(
        '<p style="color: #c00; font-weight: bold; background: url(https://t.example/x); position: fixed">x</p>'
    )
    assert 'style="color: #c00; font-weight: bold"' in clean


def test_cid_images_are_inlined_from_the_message():
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
    )
    message = EmailMessage()
    message["Subject"] = "logo"
    message.set_content("texte")
    message.add_alternative('<p>Logo : <img src="cid:logo@ac" alt="logo"></p>', subtype="html")
    message.get_payload()[1].add_related(png, "image", "png", cid="<logo@ac>")
    body = rendering.body(bytes(message))
    assert body.kind == "html" and not body.has_remote_images
    [(_, attrs)] = [t for t in tags_of(body.content) if t[0] == "img"]
    assert attrs["src"] == "data:image/png;base64," + base64.b64encode(png).decode()


def test_plain_text_mail_and_quarantine_text_only():
    message = EmailMessage()
    message["Subject"] = "texte"
    message.set_content("Bonjour <b>tous</b>,\nvoir https://www.ac-montpellier.fr.\n")
    body = rendering.body(bytes(message))
    assert body.kind == "text"
    assert "&lt;b&gt;tous&lt;/b&gt;" in body.content
    assert '<a href="https://www.ac-montpellier.fr"' in body.content
    html_mail = EmailMessage()
    html_mail.set_content("<p>Un <b>virus</b></p><script>alert(1)</script>", subtype="html")
    quarantined = rendering.body(bytes(html_mail), text_only=True)
    assert quarantined.kind == "text" and "<" not in str(quarantined.content).replace("&lt;", "")
    assert "Un virus" in quarantined.content and "alert" not in quarantined.content


def test_attachments_and_their_download_names():
    message = EmailMessage()
    message.set_content("corps")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="bulletin élève.pdf")
    raw = bytes(message)
    from common.mailstore import summarize

    [listed] = summarize(raw).attachments
    data, content_type = rendering.attachment(raw, listed.part)
    assert data == b"%PDF-1.4" and content_type == "application/pdf"
    assert rendering.attachment(raw, 99) is None
    header = rendering.content_disposition("bulletin élève.pdf")
    assert (
        header
        == "attachment; filename=\"bulletin _l_ve.pdf\"; filename*=UTF-8''bulletin%20%C3%A9l%C3%A8ve.pdf"
    )
    evil = rendering.content_disposition('../../x"; filename=evil.html\r\nX: y')
    assert "\r" not in evil and "\n" not in evil and '"; filename=evil' not in evil

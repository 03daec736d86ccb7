"""Turning a raw message into what the reader shows: headers, a safe body, and attachments.

HTML bodies are sanitised with nh3 (the Rust `ammonia` library), an allowlist sanitiser: only the tags and
attributes below survive; scripts, styles sheets, event handlers, forms, frames, objects, SVG and MathML
are dropped; URL attributes keep only `http`, `https` and `mailto` links (no `javascript:`, no `data:`
link, no relative URL that would point into the webmail); every link gets `rel="noopener noreferrer"`
and `target="_blank"`; `style` attributes keep only a list of harmless properties and never a `url(`,
`expression`, escape or comment. Images:

- `cid:` images are looked up among the message's own parts and inlined as `data:` URIs (raster types
  only, size-capped), so the body never fetches anything to show them;
- `data:` images already in the mail are kept only for raster types (`image/png|gif|jpeg|webp`);
- remote images (`http:`/`https:`) are removed unless the reader asked to see them for this message.

The sanitised document is served by the view in a `<iframe sandbox>` (no script, no same-origin access)
with its own CSP (`security.message_body_csp`), which would block a remote image or a script even if one
slipped through: two independent layers.

Plain-text bodies are HTML-escaped, and only `http(s)://…` and `mailto:` runs become links, built from
the escaped text: markup written in a text mail is shown as text, never interpreted.

Quarantined mail (an entry with `virus`) is shown as text only (`text_only=True`), HTML converted to text.
"""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
import html
import re
import urllib.parse
from dataclasses import dataclass, field

import nh3
from markupsafe import Markup

#: Largest HTML body sanitised; beyond, the rest is cut (a mail body this large is not read on screen).
MAX_HTML_CHARS = 2_000_000
MAX_TEXT_CHARS = 1_000_000
#: Largest inline (`cid:`) image inlined as a data: URI.
MAX_INLINE_IMAGE = 3 * 1024 * 1024
RASTER_TYPES = ("image/png", "image/gif", "image/jpeg", "image/jpg", "image/webp")

TAGS = {
    "a", "abbr", "acronym", "address", "b", "bdi", "bdo", "big", "blockquote", "br", "caption", "center",
    "cite", "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "figcaption",
    "figure", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark",
    "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "wbr",
}  # fmt: skip
#: Removed with their content (the other unknown tags are removed, their text kept).
CLEAN_CONTENT_TAGS = {
    "script", "style", "title", "head", "noscript", "template", "iframe", "object", "svg", "math",
    "textarea", "select", "option", "noembed", "noframes", "xmp", "plaintext",
}  # fmt: skip
GENERIC_ATTRIBUTES = {"align", "valign", "dir", "lang", "title", "width", "height", "style", "bgcolor"}
ATTRIBUTES = {
    "*": GENERIC_ATTRIBUTES,
    "a": {"href", "name"},
    "img": {"src", "alt", "border", "hspace", "vspace"},
    "font": {"color", "face", "size"},
    "table": {"border", "cellpadding", "cellspacing"},
    "td": {"colspan", "rowspan", "nowrap"},
    "th": {"colspan", "rowspan", "nowrap", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "li": {"value"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
}
URL_SCHEMES = {"http", "https", "mailto", "cid", "data"}
#: CSS properties kept in `style` attributes: layout and typography, nothing that loads or positions.
STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "font-variant", "text-align", "text-decoration", "text-indent", "text-transform", "letter-spacing",
    "word-spacing", "line-height", "vertical-align", "white-space", "word-break", "word-wrap",
    "overflow-wrap", "direction", "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
    "padding", "padding-top", "padding-right", "padding-bottom", "padding-left", "border", "border-top",
    "border-right", "border-bottom", "border-left", "border-color", "border-style", "border-width",
    "border-collapse", "border-spacing", "border-radius", "width", "max-width", "min-width", "height",
    "max-height", "min-height", "list-style-type", "table-layout", "text-overflow", "display",
}  # fmt: skip
_BAD_CSS = re.compile(r"url\s*\(|expression|\\|/\*|javascript|vbscript|behavior|binding|@|image-set|var\s*\(|"
                      r"attr\s*\(|<|>", re.I)  # fmt: skip
_DATA_IMAGE = re.compile(r"^data:(image/(?:png|gif|jpe?g|webp));base64,[A-Za-z0-9+/=\s]*$", re.I)


@dataclass
class Body:
    """A message body ready for the reader."""

    #: "html" (a sanitised document for the sandboxed frame) or "text" (escaped markup for the page)
    kind: str
    content: str
    #: the HTML body referred to remote images (they were removed unless allowed)
    has_remote_images: bool = False


@dataclass
class _Images:
    allow_remote: bool
    inline: dict[str, str] = field(default_factory=dict)
    remote_found: bool = False


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _decoded_text(part) -> str:
    """A text part's content as str, whatever its declared (or broken) charset."""
    try:
        payload = part.get_payload(decode=True) or b""
    except Exception:  # noqa: BLE001 - malformed transfer encoding
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _body_part(message, preference: tuple[str, ...]):
    try:
        return message.get_body(preferencelist=preference)
    except Exception:  # noqa: BLE001
        return None


def inline_images(message) -> dict[str, str]:
    """Content-ID (without <>) -> data: URI of the message's raster image parts."""
    images: dict[str, str] = {}
    for part in message.walk():
        if part.is_multipart():
            continue
        cid = str(part.get("Content-ID", "") or "").strip().strip("<>").strip()
        content_type = part.get_content_type()
        if not cid or content_type not in RASTER_TYPES:
            continue
        try:
            data = part.get_payload(decode=True) or b""
        except Exception:  # noqa: BLE001, S112 - a broken image part is simply not shown
            continue
        if len(data) > MAX_INLINE_IMAGE:
            continue
        images[cid] = f"data:{content_type};base64,{base64.b64encode(data).decode()}"
    return images


def _clean_style(value: str) -> str | None:
    kept = []
    for declaration in value.split(";"):
        name, sep, css = declaration.partition(":")
        name, css = name.strip().lower(), css.strip()
        if not sep or name not in STYLE_PROPERTIES or not css or len(css) > 200 or _BAD_CSS.search(css):
            continue
        kept.append(f"{name}: {css}")
    return "; ".join(kept) or None


def _attribute_filter(images: _Images):
    def check(element: str, attribute: str, value: str) -> str | None:
        if attribute == "style":
            return _clean_style(value)
        if element == "img" and attribute == "src":
            lowered = value.strip().lower()
            if lowered.startswith("cid:"):
                cid = urllib.parse.unquote(value.strip()[4:]).strip("<>")
                return images.inline.get(cid)
            if lowered.startswith("data:"):
                return value if _DATA_IMAGE.match(value.strip()) else None
            if lowered.startswith(("http:", "https:")):
                images.remote_found = True
                return value if images.allow_remote else None
            return None
        if attribute in ("href", "cite"):
            lowered = value.strip().lower()
            return value if lowered.startswith(("http:", "https:", "mailto:")) else None
        return value

    return check


def sanitize_html(source: str, *, allow_remote_images: bool = False, inline: dict[str, str] | None = None):
    """(safe HTML fragment, whether the source had remote images)."""
    images = _Images(allow_remote=allow_remote_images, inline=inline or {})
    clean = nh3.clean(
        source[:MAX_HTML_CHARS],
        tags=TAGS,
        clean_content_tags=CLEAN_CONTENT_TAGS,
        attributes=ATTRIBUTES,
        attribute_filter=_attribute_filter(images),
        strip_comments=True,
        link_rel="noopener noreferrer",
        url_schemes=URL_SCHEMES,
        url_relative="deny",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )
    return clean, images.remote_found


_URL = re.compile(r"(?:https?://|mailto:)[^\s<>\"'`\[\]{}|\\^]+", re.I)
_TRAILING = ".,;:!?)»"


def text_to_html(text: str) -> Markup:
    """Escaped plain text with its http(s)/mailto URLs as links; nothing in the text is markup."""
    text = text[:MAX_TEXT_CHARS]
    out, position = [], 0
    for match in _URL.finditer(text):
        url = match.group(0)
        stripped = url.rstrip(_TRAILING)
        end = match.start() + len(stripped)
        out.append(html.escape(text[position : match.start()]))
        if len(stripped) > len("mailto:"):
            href = html.escape(stripped, quote=True)
            out.append(f'<a href="{href}" rel="noopener noreferrer" target="_blank">{href}</a>')
        else:
            out.append(html.escape(stripped))
        position = end
    out.append(html.escape(text[position:]))
    # Every piece was escaped above; the only markup is the <a> built from escaped URLs.
    return Markup("".join(out))  # noqa: S704


def html_to_text(source: str) -> str:
    """The text of an HTML body (for quarantined mail and replies): tags dropped, entities decoded."""
    source = re.sub(
        r"(?i)<br\s*/?>|</p\s*>|</div\s*>|</tr\s*>|</h[1-6]\s*>|</li\s*>", "\n", source[:MAX_HTML_CHARS]
    )
    stripped = nh3.clean(source, tags=set(), clean_content_tags=CLEAN_CONTENT_TAGS)
    text = html.unescape(stripped)
    return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t\r\f\v]+", " ", text)).strip()


def body(raw: bytes, *, allow_remote_images: bool = False, text_only: bool = False) -> Body:
    """The body of a raw message: sanitised HTML when it has an HTML part (and not text_only), else text."""
    message = parse(raw)
    if not text_only:
        part = _body_part(message, ("html", "plain"))
        if part is not None and part.get_content_subtype() == "html":
            clean, remote = sanitize_html(
                _decoded_text(part), allow_remote_images=allow_remote_images, inline=inline_images(message)
            )
            return Body("html", clean, remote)
    part = _body_part(message, ("plain", "html"))
    if part is None:
        return Body("text", Markup(""))
    text = _decoded_text(part)
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
    return Body("text", text_to_html(text))


def body_document(fragment: str) -> str:
    """A whole HTML document around a sanitised fragment, for the sandboxed frame."""
    return (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        "<style>body{font-family:Marianne,arial,sans-serif;font-size:1rem;line-height:1.5;color:#161616;"
        "margin:0.5rem;overflow-wrap:anywhere}img{max-width:100%;height:auto}"
        "table{max-width:100%}</style></head><body>" + fragment + "</body></html>"
    )


def plain_text(raw: bytes) -> str:
    """The text of a message's body (HTML converted), e.g. to quote it in a reply."""
    message = parse(raw)
    part = _body_part(message, ("plain", "html"))
    if part is None:
        return ""
    text = _decoded_text(part)
    return html_to_text(text) if part.get_content_subtype() == "html" else text


def attachment(raw: bytes, part_index: int) -> tuple[bytes, str] | None:
    """(bytes, content type) of the part numbered `part_index` in `message.walk()` order.

    The numbering is `common.mailstore.summarize`'s, which wrote the entry's `attachments[].part`.
    """
    message = parse(raw)
    for index, part in enumerate(message.walk()):
        if index == part_index:
            if part.is_multipart():
                return None
            try:
                return part.get_payload(decode=True) or b"", part.get_content_type()
            except Exception:  # noqa: BLE001
                return None
    return None


_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|;]+')


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the UTF-8 name (RFC 6266 / RFC 8187 `filename*`)."""
    name = _UNSAFE_FILENAME.sub("_", filename or "").strip(" .") or "piece-jointe"
    name = name[:150]
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
    quoted = urllib.parse.quote(name, safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quoted}"

"""Language-independent features of a message, hashed into a fixed-size sparse vector.

A message becomes a bag of named features ("tokens"), each in a namespace: words and word pairs of the
body (`w:`, `b:`) and of the subject (`s:`), learned from the data whatever the language (Unicode word
boundaries, no English stop-list or stemmer), and structural facts that do not depend on language at all:
which headers are present, sender and Reply-To domains, Message-ID and Date shape, mailer, MIME structure,
attachment types, charsets, link hosts, IP-literal links, anchors whose text shows another host, HTML
share, capitals share, length. Text tokens get sublinear, L2-normalised weights; structural tokens a fixed
weight. `FeatureHasher` maps the names into `N_FEATURES` columns, so the model has a fixed size and can be
updated online with reports.

`describe(token)` turns a feature name into the short French label shown to users under "Pourquoi ce
message est-il classé indésirable ?".
"""

from __future__ import annotations

import email.utils
import ipaddress
import itertools
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction import FeatureHasher
from sklearn.utils import murmurhash3_32

from spam.parsing import ParsedMessage, domain_of, host_of, parse_message

N_FEATURES = 2**20
#: Words of the body that are tokenised (the text itself is already capped by the parser).
MAX_WORDS = 4000
_WORD_RE = re.compile(r"[^\W_]{2,40}|[$€£%!]")


def _latin1_class(pattern: str) -> str:
    """The Latin-1 characters `pattern` (one character class) matches, as a class of explicit ranges."""
    chars = [code for code in range(256) if re.fullmatch(pattern, chr(code))]
    ranges: list[list[int]] = []
    for code in chars:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(
        re.escape(chr(first)) + (f"-{re.escape(chr(last))}" if last > first else "") for first, last in ranges
    )


#: `_WORD_RE` for text whose characters are all Latin-1 (most mail in French): the same matches, with
#: the word characters as explicit ranges, which `re` checks without a Unicode lookup per character.
_LATIN1_WORD_RE = re.compile("[" + _latin1_class(r"[^\W_]") + "]{2,40}|[" + _latin1_class("[$€£%!]") + "]")
_URL_WORD_RE = re.compile(r"[A-Za-z]{3,20}")
_MID_RE = re.compile(r"^<?([^@>]*)@([^>]*)>?$")
_DIGITS_RE = re.compile(r"\d")
_SHAPE_RE = re.compile(r"[A-Za-z]+|\d+|[^A-Za-z\d]+")


@dataclass(frozen=True)
class FeatureParams:
    """Parameters of feature extraction; part of a model's identity (a model only reads its own)."""

    n_features: int = N_FEATURES
    bigrams: bool = True
    struct_weight: float = 0.5
    subject_weight: float = 1.0
    html_tags: bool = False
    url_words: bool = False

    def as_dict(self) -> dict:
        """The parameters as plain JSON-able values."""
        return {
            "n_features": self.n_features,
            "bigrams": self.bigrams,
            "struct_weight": self.struct_weight,
            "subject_weight": self.subject_weight,
            "html_tags": self.html_tags,
            "url_words": self.url_words,
        }


def _bucket(value: float, edges: tuple[float, ...]) -> int:
    for index, edge in enumerate(edges):
        if value < edge:
            return index
    return len(edges)


def _registered_domain(host: str) -> str:
    labels = [label for label in host.split(".") if label]
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in {"co", "com", "ac", "gouv", "org", "net"}:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return bool(host) and host.replace(".", "").isdigit()
    return True


def _words(text: str, limit: int) -> list[str]:
    # Word boundaries are Unicode (accents, any script); numbers become their shape so that order numbers
    # and dates do not each become a feature of their own.
    text = text[: limit * 12].lower()
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        words = _WORD_RE.findall(text)[:limit]
    else:
        words = _LATIN1_WORD_RE.findall(text)[:limit]
    if "".join(words).isalpha():  # every word is letters only (most text): nothing to rewrite
        return words
    for index, word in enumerate(words):
        if not word.isalpha() and len(word) > 1:
            if word.isdigit():
                words[index] = f"<{len(word)}d>" if len(word) < 8 else "<long-number>"
            else:
                words[index] = _DIGITS_RE.sub("0", word)
    return words


#: Latin-1 code points that are capitals, and small letters (ASCII and the Latin-1 Supplement's letters:
#: × and ÷ are not); index 256 stands for every code point above Latin-1, which is neither.
_CAPITALS = np.zeros(257, dtype=bool)
_CAPITALS[65:91] = _CAPITALS[0xC0:0xDF] = True
_CAPITALS[0xD7] = False
_SMALL = np.zeros(257, dtype=bool)
_SMALL[97:123] = _SMALL[0xDF:0x100] = True
_SMALL[0xF7] = False


def _char_ratios(text: str) -> tuple[float, float]:
    """Share of capitals among letters and share of non-ASCII characters, from one count of the code
    points with numpy (every one above Latin-1 counted together)."""
    codes = np.frombuffer(text.encode("utf-32-le", "replace"), dtype=np.uint32)
    if not codes.size:
        return 0.0, 0.0
    counts = np.bincount(np.minimum(codes, 256), minlength=257)
    capitals = int(counts[_CAPITALS].sum())
    letters = capitals + int(counts[_SMALL].sum())
    return (capitals / letters if letters else 0.0), int(counts[128:].sum()) / codes.size


def _shape(text: str) -> str:
    parts = []
    for chunk in _SHAPE_RE.findall(text[:60]):
        if chunk[0].isalpha():
            parts.append("a")
        elif chunk[0].isdigit():
            parts.append("9")
        else:
            parts.append(chunk[:2])
    return "".join(parts)[:20]


def text_tokens(parsed: ParsedMessage, params: FeatureParams) -> dict[str, float]:
    """Sublinear, L2-normalised weights of the words and word pairs of the subject and body."""
    # Words and pairs are counted first and named after: one token string per distinct word or pair
    # instead of one per occurrence. The namespaces never overlap (a word holds no space), so the
    # tokens, their counts and their order are those of counting the named tokens directly.
    body = _words(parsed.text, MAX_WORDS)
    counts = {"w:" + word: n for word, n in Counter(body).items()}
    if params.bigrams:
        pairs = Counter(itertools.pairwise(body))
        counts.update({f"b:{first} {second}": n for (first, second), n in pairs.items()})
    counts.update({"s:" + word: n for word, n in Counter(_words(parsed.subject, 50)).items()})
    if not counts:
        return {}
    tokens = list(counts)
    weights = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(tokens)))
    if params.subject_weight != 1.0:
        weights[[token.startswith("s:") for token in tokens]] *= params.subject_weight
    weights /= np.sqrt(np.dot(weights, weights))
    return dict(zip(tokens, weights.tolist(), strict=True))


def markup_tokens(parsed: ParsedMessage, params: FeatureParams) -> list[str]:
    """HTML tag and attribute names, and the words of link paths, when `params` asks for them."""
    tokens = []
    if params.html_tags:
        tokens.extend(f"tag:{tag}" for tag in sorted(parsed.html_tags)[:200])
    if params.url_words:
        words = set()
        for url, _ in parsed.links[:100]:
            path = url.split("://", 1)[-1].partition("/")[2]
            words.update(word.lower() for word in _URL_WORD_RE.findall(path))
        tokens.extend(f"uw:{word}" for word in sorted(words)[:200])
    return tokens


def structure_tokens(parsed: ParsedMessage) -> list[str]:
    """Names of the structural features of a message (headers, sender, MIME, links, shape of the text)."""
    tokens = [f"hdr:{name}" for name in dict.fromkeys(parsed.header_names)]
    from_domain = parsed.from_domain
    tokens.append(f"from_dom:{_registered_domain(from_domain)}" if from_domain else "from:missing")
    if from_domain:
        tokens.append(f"from_tld:{from_domain.rsplit('.', 1)[-1]}")
        local = parsed.from_address.partition("@")[0]
        tokens.append(f"from_local_shape:{_shape(local)}")
    if not parsed.from_display:
        tokens.append("from:no_display_name")
    elif "@" in parsed.from_display:
        tokens.append("from:address_in_display_name")
    if parsed.reply_to_address:
        reply_domain = domain_of(parsed.reply_to_address)
        tokens.append(f"replyto_dom:{_registered_domain(reply_domain)}")
        if _registered_domain(reply_domain) != _registered_domain(from_domain):
            tokens.append("replyto:other_domain")
    if parsed.return_path and domain_of(parsed.return_path) != from_domain:
        tokens.append("return_path:other_domain")
    tokens.append(f"received:{_bucket(parsed.received_count, (1, 3, 5, 7, 9))}")

    match = _MID_RE.match(parsed.message_id.strip())
    if not parsed.message_id:
        tokens.append("mid:missing")
    elif not match:
        tokens.append("mid:malformed")
    else:
        mid_local, mid_domain = match.groups()
        tokens.append(f"mid_shape:{_shape(mid_local)}")
        if from_domain and _registered_domain(mid_domain.lower()) == _registered_domain(from_domain):
            tokens.append("mid:same_domain_as_from")
        if _is_ip(mid_domain):
            tokens.append("mid:ip_domain")
    if not parsed.date:
        tokens.append("date:missing")
    else:
        try:
            parsed_date = email.utils.parsedate_tz(parsed.date)
        except (ValueError, TypeError, IndexError):
            parsed_date = None
        if parsed_date is None:
            tokens.append("date:malformed")
        else:
            offset = parsed_date[9]
            tokens.append("date:tz_missing" if offset is None else f"date:tz_{offset // 3600:+d}")
    if parsed.mailer:
        first = re.split(r"[\s/(;]", parsed.mailer.strip(), maxsplit=1)[0].lower()
        tokens.append(f"mailer:{_DIGITS_RE.sub('0', first)[:30]}")
    else:
        tokens.append("mailer:none")

    for ctype in dict.fromkeys(parsed.content_types):
        tokens.append(f"ct:{ctype[:50]}")
    if parsed.content_types:
        tokens.append(f"ct_top:{parsed.content_types[0][:50]}")
    tokens.append(f"parts:{_bucket(len(parsed.content_types), (2, 3, 5, 10))}")
    for ctype, ext in dict.fromkeys(parsed.attachments):
        tokens.append(f"att:{ctype[:50]}")
        if ext:
            tokens.append(f"att_ext:{ext}")
    for charset in dict.fromkeys(parsed.charsets):
        tokens.append(f"cs:{charset}")

    hosts = []
    for url, anchor in parsed.links[:200]:
        host = host_of(url)
        if not host:
            continue
        hosts.append(host)
        if _is_ip(host):
            tokens.append("url:ip_literal")
        if "@" in url.split("?")[0]:
            tokens.append("url:userinfo")
        anchor_host = host_of(anchor) if re.match(r"(?i)\s*(https?://|www\.)", anchor) else ""
        if anchor_host and _registered_domain(anchor_host) != _registered_domain(host):
            tokens.append("url:anchor_mismatch")
        if url.lower().startswith("mailto:"):
            tokens.append("url:mailto")
    for host in dict.fromkeys(hosts):
        if not _is_ip(host):
            tokens.append(f"url_dom:{_registered_domain(host)}")
            tokens.append(f"url_tld:{host.rsplit('.', 1)[-1]}")
    tokens.append(f"urls:{_bucket(len(parsed.links), (1, 2, 4, 8, 16, 32))}")

    total = parsed.html_chars + parsed.plain_chars
    if parsed.html_chars and not parsed.plain_chars:
        tokens.append("html:only")
    elif parsed.html_chars:
        tokens.append("html:with_plain")
    if parsed.images:
        tokens.append(f"html:images_{_bucket(parsed.images, (2, 5, 10))}")
    if parsed.forms:
        tokens.append("html:form")
    tokens.append(f"length:{_bucket(total, (1, 200, 1000, 4000, 16000, 64000))}")
    if parsed.text:
        caps, non_ascii = _char_ratios(parsed.text[:20000])
        tokens.append(f"caps:{_bucket(caps, (0.05, 0.1, 0.2, 0.4))}")
        tokens.append(f"non_ascii:{_bucket(non_ascii, (0.001, 0.02, 0.1, 0.3))}")
    if not parsed.subject:
        tokens.append("subject:missing")
    elif _char_ratios(parsed.subject)[0] > 0.6 and len(parsed.subject) > 8:
        tokens.append("subject:capitals")
    if parsed.subject.count("!") >= 2:
        tokens.append("subject:exclamations")
    if parsed.defects:
        tokens.append(f"defects:{_bucket(parsed.defects, (2, 5))}")
    if parsed.truncated:
        tokens.append("size:over_limit")
    return tokens


def message_features(parsed: ParsedMessage, params: FeatureParams) -> dict[str, float]:
    """Every feature of a parsed message with its weight."""
    features = text_tokens(parsed, params)
    for token in structure_tokens(parsed) + markup_tokens(parsed, params):
        features[token] = params.struct_weight
    return features


class Featurizer:
    """Raw messages → hashed sparse rows (CSR, float64), with the named features kept for explanations."""

    def __init__(self, params: FeatureParams | None = None):
        self.params = params or FeatureParams()
        self._hasher = FeatureHasher(
            n_features=self.params.n_features, input_type="dict", alternate_sign=False
        )
        self._columns: dict[str, int] = {}

    def features(self, raw: bytes) -> dict[str, float]:
        """The named, weighted features of one raw message."""
        return message_features(parse_message(raw), self.params)

    def hash(self, feature_dicts: list[dict[str, float]]) -> sp.csr_matrix:
        """Hash named feature dicts into a sparse matrix of `n_features` columns."""
        return self._hasher.transform(feature_dicts).tocsr()

    def transform(self, raws: list[bytes]) -> sp.csr_matrix:
        """Hash the features of raw messages."""
        return self.hash([self.features(raw) for raw in raws])

    def columns(self, tokens: list[str]) -> np.ndarray:
        """The hashed column of each feature name (the same as FeatureHasher's), memoised.

        Scoring one message through FeatureHasher and scipy costs more than the dot product itself;
        the columns of the vocabulary seen so far are kept in a bounded dict instead.
        """
        cache = self._columns
        if len(cache) > _COLUMN_CACHE_SIZE:
            cache.clear()
        columns = [cache.get(token) for token in tokens]
        if None in columns:
            n_features = self.params.n_features
            for index, column in enumerate(columns):
                if column is None:
                    token = tokens[index]
                    signed = murmurhash3_32(token.encode("utf-8"), seed=0)
                    column = (2**31 if signed == -(2**31) else abs(signed)) % n_features
                    columns[index] = cache[token] = column
        return np.array(columns, dtype=np.int64)


#: Feature names whose column is remembered by a Featurizer (about 100 MB at most).
_COLUMN_CACHE_SIZE = 500_000


_LABELS = {
    "w": "le mot « {} » dans le texte",
    "b": "l'expression « {} » dans le texte",
    "s": "le mot « {} » dans l'objet",
    "hdr": "l'en-tête technique {}",
    "from_dom": "le domaine de l'expéditeur ({})",
    "from_tld": "l'extension du domaine de l'expéditeur (.{})",
    "from_local_shape": "la forme de l'adresse de l'expéditeur",
    "replyto_dom": "l'adresse de réponse chez {}",
    "received": "le nombre de serveurs traversés",
    "mid_shape": "la forme de l'identifiant du message",
    "date": "la date du message ({})",
    "mailer": "le logiciel d'envoi ({})",
    "ct": "une partie de type {}",
    "ct_top": "la structure du message ({})",
    "parts": "le nombre de parties du message",
    "att": "une pièce jointe de type {}",
    "att_ext": "une pièce jointe .{}",
    "cs": "le jeu de caractères {}",
    "url_dom": "un lien vers {}",
    "url_tld": "un lien vers un domaine .{}",
    "urls": "le nombre de liens",
    "length": "la longueur du texte",
    "caps": "la proportion de majuscules",
    "non_ascii": "la proportion de caractères accentués ou spéciaux",
    "defects": "des erreurs de format du message",
    "tag": "la mise en forme HTML ({})",
    "uw": "le mot « {} » dans l'adresse d'un lien",
}

_FIXED_LABELS = {
    "from:missing": "l'absence d'expéditeur",
    "from:no_display_name": "l'expéditeur sans nom affiché",
    "from:address_in_display_name": "une adresse dans le nom affiché de l'expéditeur",
    "replyto:other_domain": "une adresse de réponse dans un autre domaine que l'expéditeur",
    "return_path:other_domain": "une adresse de retour dans un autre domaine que l'expéditeur",
    "mid:missing": "l'absence d'identifiant de message",
    "mid:malformed": "un identifiant de message mal formé",
    "mid:same_domain_as_from": "un identifiant de message du domaine de l'expéditeur",
    "mid:ip_domain": "un identifiant de message avec une adresse IP",
    "date:missing": "l'absence de date",
    "date:malformed": "une date mal formée",
    "date:tz_missing": "une date sans fuseau horaire",
    "mailer:none": "l'absence de logiciel d'envoi déclaré",
    "url:ip_literal": "un lien vers une adresse IP",
    "url:userinfo": "un lien contenant un « @ » trompeur",
    "url:anchor_mismatch": "un lien dont le texte affiché ne correspond pas à la destination",
    "url:mailto": "un lien d'envoi de courriel",
    "html:only": "un message uniquement en HTML",
    "html:with_plain": "un message en HTML et en texte",
    "html:form": "un formulaire dans le message",
    "subject:missing": "l'absence d'objet",
    "subject:capitals": "un objet en majuscules",
    "subject:exclamations": "des points d'exclamation dans l'objet",
    "size:over_limit": "un message très volumineux",
}


def describe(token: str) -> str:
    """A short French label for a feature name, as shown to users."""
    if token in _FIXED_LABELS:
        return _FIXED_LABELS[token]
    namespace, _, value = token.partition(":")
    if namespace == "html" and value.startswith("images"):
        return "des images dans le message"
    template = _LABELS.get(namespace)
    if template is None:
        return token
    return template.format(value[:40])

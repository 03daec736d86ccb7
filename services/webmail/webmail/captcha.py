"""The captcha of the lost-password form: an image and a spoken alternative of the same six digits.

Why digits only: the spoken alternative is read in French from recordings of the ten digits
(`webmail/voices/fr`, made with espeak-ng by `python -m webmail.voices`, kept with the code so that no
server needs a speech synthesiser), and digits are what every user can type whatever the keyboard; so
image and audio both use six digits (10^6 answers). That is enough here: the captcha only slows down
scripted requests, the directory still needs NUMEN + date of birth and throttles recovery requests
itself.

The answer lives in the anonymous session's server-side data (`webmail_sessions`, never sent to the
browser), in clear: whoever can read that collection could read session tokens' hashes anyway and gains
nothing, and the browser tests read it from there (a production user cannot). A challenge is single
use (consumed by the first check, right or wrong), expires after `CHALLENGE_LIFETIME`, and a session that
fails `MAX_FAILURES` times within `FAILURE_WINDOW` is refused for the rest of the window.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time

from captcha.audio import AudioCaptcha
from captcha.image import ImageCaptcha

from common.db import utcnow
from webmail.sessions import Session
from webmail.voices import FOLDER as FRENCH_VOICES

LENGTH = 6
ALPHABET = "0123456789"
CHALLENGE_LIFETIME = dt.timedelta(minutes=10)
MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)
#: Keys of the session's data.
KEY = "captcha"
FAILURES_KEY = "captcha_failures"

_image = ImageCaptcha(width=240, height=80)
_audio = AudioCaptcha(voicedir=str(FRENCH_VOICES))


def new_challenge(session: Session) -> str:
    """Draw a new answer for this session (replacing any previous one) and return it."""
    answer = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    session.data[KEY] = {"answer": answer, "expires_at": (utcnow() + CHALLENGE_LIFETIME).isoformat()}
    session.dirty = True
    return answer


def current_answer(session: Session) -> str:
    """The session's live answer, drawing a new one when there is none or it expired."""
    challenge = session.data.get(KEY) or {}
    answer = challenge.get("answer", "")
    try:
        expires_at = dt.datetime.fromisoformat(challenge.get("expires_at", ""))
    except ValueError:
        expires_at = None
    if not answer or expires_at is None or expires_at <= utcnow():
        answer = new_challenge(session)
    return answer


def image_png(answer: str) -> bytes:
    """A PNG of the answer (a new random distortion at every call)."""
    return _image.generate(answer, format="png").getvalue()


def audio_wav(answer: str) -> bytes:
    """A WAV (8 kHz mono) of the answer's digits spoken one by one, with background noise. CPU-bound
    (about 0.3 s): call it in a thread."""
    return bytes(_audio.generate(answer))


def blocked(session: Session) -> bool:
    """True while this session has failed too often recently."""
    now = time.time()
    recent = [t for t in session.data.get(FAILURES_KEY, []) if now - t < FAILURE_WINDOW.total_seconds()]
    return len(recent) >= MAX_FAILURES


def check(session: Session, given: str) -> bool:
    """Whether `given` is the session's answer; the challenge is consumed either way."""
    challenge = session.data.pop(KEY, None) or {}
    session.dirty = True
    expected = challenge.get("answer", "")
    try:
        live = dt.datetime.fromisoformat(challenge.get("expires_at", "")) > utcnow()
    except ValueError:
        live = False
    cleaned = "".join((given or "").split()).upper()
    ok = bool(expected) and live and secrets.compare_digest(cleaned.encode(), expected.upper().encode())
    if not ok:
        now = time.time()
        failures = [t for t in session.data.get(FAILURES_KEY, []) if now - t < FAILURE_WINDOW.total_seconds()]
        session.data[FAILURES_KEY] = [*failures, now]
    return ok

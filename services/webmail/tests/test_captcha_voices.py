"""The audio captcha speaks French: its voices are the project's recordings of the ten digits."""

from __future__ import annotations

import shutil
import wave

import pytest

from webmail import captcha, voices


def test_the_audio_captcha_reads_the_french_recordings_of_every_digit():
    assert captcha._audio._voicedir == str(voices.FOLDER)
    assert sorted(captcha._audio.choices) == list(captcha.ALPHABET)
    for digit in captcha.ALPHABET:
        with wave.open(str(voices.FOLDER / digit / "fr.wav")) as recording:
            assert (recording.getnchannels(), recording.getsampwidth(), recording.getframerate()) == (
                1,
                1,
                8000,
            )
            assert 0.2 < recording.getnframes() / 8000 < 2.0  # a spoken word, not silence or a sentence


def test_a_challenge_is_spoken_with_them():
    audio = captcha._audio.generate("0123456789")
    assert bytes(audio[:4]) == b"RIFF" and len(audio) > 10 * 0.2 * 8000


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng (Debian package) not installed")
def test_the_recordings_can_be_made_again(tmp_path):
    written = voices.write_voices(tmp_path)
    assert [p.parent.name for p in written] == list(captcha.ALPHABET)
    with wave.open(str(written[0])) as recording:
        assert recording.getframerate() == 8000 and recording.getnframes() > 1000

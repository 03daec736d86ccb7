"""The French voice of the audio captcha: the ten digits, spoken by espeak-ng.

    python -m webmail.voices [FOLDER]

The `captcha` package ships recordings of the digits in English only. This writes one recording per
digit (« zéro », « un », … « neuf »), in the layout and format `captcha.audio.AudioCaptcha` reads:
`FOLDER/<digit>/fr.wav`, mono, 8 kHz, 8-bit unsigned PCM. FOLDER defaults to the package's
`voices/fr`, where the recordings are kept with the code (ten files of a few kilobytes), so that no
server needs a speech synthesiser: run this again only to change the voice. It needs espeak-ng
(Debian package `espeak-ng`).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import wave
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "voices" / "fr"
DIGITS = ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"]
RATE = 8000  # what captcha.audio mixes at


def record(word: str) -> bytes:
    """`word` spoken in French, as 8 kHz 8-bit unsigned mono PCM frames."""
    import numpy as np

    spoken = subprocess.run(
        ["espeak-ng", "-v", "fr", "-s", "130", "--stdout", word], check=True, capture_output=True
    ).stdout
    with wave.open(io.BytesIO(spoken)) as source:
        if source.getnchannels() != 1 or source.getsampwidth() != 2:
            raise SystemExit(f"unexpected espeak-ng output: {source.getparams()}")
        rate = source.getframerate()
        samples = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2").astype(np.float64)
    # Resample by linear interpolation (espeak-ng speaks at 22,050 Hz), then to unsigned 8-bit.
    duration = len(samples) / rate
    times = np.arange(0, duration, 1 / RATE)
    resampled = np.interp(times, np.arange(len(samples)) / rate, samples)
    peak = max(1.0, float(np.abs(resampled).max()))
    return (np.clip(resampled / peak * 120, -127, 127) + 128).astype(np.uint8).tobytes()


def write_voices(folder: Path = FOLDER) -> list[Path]:
    written = []
    for digit, word in enumerate(DIGITS):
        target = folder / str(digit) / "fr.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(target), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(1)
            out.setframerate(RATE)
            out.writeframes(record(word))
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    if not shutil.which("espeak-ng"):
        print("espeak-ng is needed (Debian package espeak-ng)", file=sys.stderr)
        return 1
    folder = Path(argv[0]) if argv else FOLDER
    for path in write_voices(folder):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

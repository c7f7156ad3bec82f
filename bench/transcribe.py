"""Does transcribing through the app cost more than faster-whisper itself?

The same 5-second clip of speech (espeak-ng, padded with silence to exactly 5 s) is
transcribed, in turn (A B A B …, in one process):

- A, direct: faster-whisper called in this process on the file, with the bundled tiny.en
  model loaded once, at the settings the app uses (CPU, int8, every core, English);
- B, the app: the recording posted to the chat's voice URL by a signed-in person
  (django.test.Client), the task on the ``local`` queue (embedded mode: this process's pool)
  handing it to the transcribing child process, the status URL polled every 10 ms until the
  words are there: ``time_to_text_s`` is that whole wait. The browser polls every 500 ms
  (static/chat/voice.js), which adds up to that much to what a person sees.

A warm-up of each runs first (for the app it starts the child and loads the model there:
``first_app_s``). Reports medians of --runs pairs and ``ratio`` = direct / app speed (the
median of the pairs' ratios; target ≥ 0.9), and checks both heard the same words.

    .venv/bin/python bench/transcribe.py [--runs 5]

SQLite in a temporary data folder (embedded mode). One JSON line goes to stdout, progress
to stderr.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import bench_environment, log, report  # noqa: E402

CLIP_S = 5.0
SPOKEN = "Could you tell me what the weather will be like in Lisbon tomorrow morning, please?"
POLL_S = 0.01


def clip_make(path: Path) -> Path:
    """The spoken sentence, cut or padded with silence to exactly ``CLIP_S`` seconds."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), SPOKEN], check=True)
    with wave.open(str(raw), "rb") as source:
        params, frames = source.getparams(), source.readframes(source.getnframes())
    wanted = int(CLIP_S * params.framerate) * params.sampwidth * params.nchannels
    with wave.open(str(path), "wb") as out:
        out.setparams(params)
        out.writeframes(frames[:wanted].ljust(wanted, b"\x00"))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with bench_environment(None) as (data_dir, _env):
        import django

        django.setup()
        from django.core.files.uploadedfile import SimpleUploadedFile
        from django.core.management import call_command
        from django.test import Client
        from django.urls import reverse
        from faster_whisper import WhisperModel

        from accounts.models import User
        from chat.transcription import bundled_model_dir

        call_command("migrate", verbosity=0)
        clip = clip_make(data_dir / "clip.wav")
        audio = clip.read_bytes()
        person = User.objects.create_user("bench@example.com", "bench-password-1")
        client = Client(HTTP_HOST="127.0.0.1")  # an allowed host, as a browser on this machine sends
        client.force_login(person)

        model = WhisperModel(
            str(bundled_model_dir()),
            device="cpu",
            compute_type="int8",
            cpu_threads=len(os.sched_getaffinity(0)),
        )

        def direct() -> tuple[float, str]:
            started = time.perf_counter()
            segments, _info = model.transcribe(str(clip), language="en")
            text = "".join(segment.text for segment in segments).strip()
            return time.perf_counter() - started, text

        def through_app() -> tuple[float, str]:
            started = time.perf_counter()
            answer = client.post(
                reverse("chat:voice_upload"), {"audio": SimpleUploadedFile("clip.wav", audio)}
            )
            status_url = answer.json()["status_url"]
            while (result := client.get(status_url).json())["state"] == "pending":
                time.sleep(POLL_S)
            if result["state"] != "done":
                raise RuntimeError(f"the app refused the clip: {result['error']}")
            return time.perf_counter() - started, result["text"]

        direct()
        first_app_s, _ = through_app()
        log(f"warm-up done; the app's first transcription (child start, model load) took {first_app_s:.2f}s")
        direct_s, app_s, ratios = [], [], []
        for run in range(args.runs):
            a, direct_text = direct()
            b, app_text = through_app()
            if app_text != direct_text:
                raise RuntimeError(f"different words: {direct_text!r} / {app_text!r}")
            direct_s.append(a)
            app_s.append(b)
            ratios.append(a / b)
            log(f"pair {run + 1}: direct {a:.3f}s, app {b:.3f}s, ratio {a / b:.3f}")
        leftovers = list((data_dir / "media" / "voice").glob("*"))
        report(
            {
                "bench": "transcribe",
                "runs": args.runs,
                "clip_s": CLIP_S,
                "cores": len(os.sched_getaffinity(0)),
                "direct_s": round(statistics.median(direct_s), 3),
                "time_to_text_s": round(statistics.median(app_s), 3),
                "ratio": round(statistics.median(ratios), 3),
                "first_app_s": round(first_app_s, 2),
                "text": direct_text,
                "recordings_left": len(leftovers),
            }
        )


if __name__ == "__main__":
    main()

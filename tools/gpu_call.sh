#!/usr/bin/env bash
# One call on a lent GPU machine (/work/.library/device; weights/README.md has the procedure), run from the repository
# root. What must come back is left under $OUT (at most 8 files of 16 MiB).
#
#   bash tools/gpu_call.sh prepare SRC VAL_SHARD VAL_FILES SHARD...   here, before a lease: copy training shards and a
#                                                                       validation set into .data/ (git-ignored),
#                                                                       print what to carry and whether it fits
#   bash tools/gpu_call.sh lease MINUTES [LEASE OPTIONS...]           there: python -m lcf.train lease for MINUTES of
#                                                                       wall time; its 5 files back in $OUT
#   bash tools/gpu_call.sh check                                       there: time the shipped weights' decoders
#                                                                       (tiled and whole) and run the conformance tests
#
# lease: trains on every .data/shard-* folder (carried in this call or left by an earlier call of the same warm
#   machine), validates on .data/val, starts from the output of the previous call of this machine
#   (runs/last-lease) or else from weights/, writes its files into $OUT (so what it saved comes back even if the
#   call is stopped at its limit) and copies them to runs/lease-HHMMSS for the next call. Give MINUTES
#   about 0.7 less than the call's limit (python's start and the copy); 9.3 fits a 600-second call. LEASE OPTIONS
#   are passed on (e.g. --init weights to start over, --students "" for the teacher alone).
# check: needs the Kodak images in .data/kodak and the constriction wheel in .whl/; about 5 minutes.
# LCF_DEVICE (default cuda) and LCF_LARGE (default 4032x3024) let tests/test_gpu_call.py run it on the CPU.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DEVICE=${LCF_DEVICE:-cuda} LARGE=${LCF_LARGE:-4032x3024}
LIMIT=$((64 * 1024 * 1024))

usage() {
    echo "usage: bash tools/gpu_call.sh prepare SRC VAL_SHARD VAL_FILES SHARD... | lease MINUTES [OPTIONS...]" \
        "| check" >&2
    exit 2
}

setup_device() {
    : "${OUT:?run this on the device machine, where OUT is set}"
    if compgen -G ".whl/*.whl" > /dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl
    fi
    export PYTHONPATH=/tmp/site:$REPO PYTHONUNBUFFERED=1
    if [ "$DEVICE" != cpu ]; then nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv,noheader; fi
}

case "${1:-}" in
prepare)
    [ $# -ge 5 ] || usage
    src=$2 val_shard=$3 val_files=$4
    shift 4
    mkdir -p .data
    for shard in "$@"; do
        [ "$shard" != "$val_shard" ] || { echo "shard-$shard is the validation shard: never train on it" >&2; exit 2; }
        if [ -d ".data/shard-$shard" ]; then echo "already there: .data/shard-$shard"; continue; fi
        rm -rf ".data/shard-$shard.tmp"
        cp -r "$src/shard-$shard" ".data/shard-$shard.tmp" && mv -T ".data/shard-$shard.tmp" ".data/shard-$shard"
    done
    if [ -d .data/val ]; then
        echo "already there: .data/val (the validation set stays the same from lease to lease)"
    else
        rm -rf .data/val.tmp && mkdir .data/val.tmp
        find "$src/shard-$val_shard" -maxdepth 1 -type f | sort | head -n "$val_files" | xargs -r cp -t .data/val.tmp
        mv -T .data/val.tmp .data/val
    fi
    tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    carry=$(du -cb .data/val $(printf ".data/shard-%s " "$@") | tail -1 | cut -f1)
    echo "carry: .data/val $(printf ".data/shard-%s " "$@")"
    echo "tree $((tree / 1048576)) MiB + carried $((carry / 1048576)) MiB = $(((tree + carry) / 1048576)) MiB" \
        "(limit 64 MiB; validation: the first $val_files files of shard-$val_shard)"
    if [ $((tree + carry)) -gt $LIMIT ]; then echo "TOO LARGE: carry fewer shards in this call" >&2; exit 3; fi
    ;;
lease)
    [ $# -ge 2 ] || usage
    minutes=$2
    shift 2
    setup_device
    data=$(ls -d .data/shard-* 2> /dev/null || true)
    if [ -z "$data" ] || [ ! -d .data/val ]; then
        echo "NO DATA: carry .data/shard-NN folders and .data/val (bash tools/gpu_call.sh prepare ...)" >&2
        exit 3
    fi
    init=weights
    if [ -f runs/last-lease ] && [ -f "$(cat runs/last-lease)/summary.json" ]; then init=$(cat runs/last-lease); fi
    out=runs/lease-$(date +%H%M%S)
    mkdir -p runs
    status=0
    # straight into $OUT: what the lease has saved comes back even when the call is stopped at its time limit
    python3 -m lcf.train lease --data $data --val .data/val --init "$init" --out "$OUT" --minutes "$minutes" \
        --device "$DEVICE" "$@" || status=$?
    if [ -f "$OUT/summary.json" ]; then
        mkdir -p "$out" && cp "$OUT"/* "$out"/
        if grep -q '"complete": true' "$out/summary.json"; then echo "$out" > runs/last-lease; fi
    fi
    ls -l "$OUT"
    exit $status
    ;;
check)
    setup_device
    if [ ! -d .data/kodak ]; then echo "NO IMAGES: carry the Kodak images in .data/kodak" >&2; exit 3; fi
    mkdir -p "$OUT/logs"
    trap 'tar czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$OUT/logs"' EXIT
    python3 "$REPO/benchmarks/device_decode.py" --weights weights --images .data/kodak --max-images 3 \
        --qualities 1,4,7 --device "$DEVICE" --repeats 5 --out "$OUT/logs/device_decode.md"
    large=$(mktemp -d)
    python3 -c "import sys; from PIL import Image; w, h = map(int, sys.argv[1].split('x')); \
Image.open('.data/kodak/kodim01.png').convert('RGB').resize((w, h), Image.LANCZOS).save(sys.argv[2])" \
        "$LARGE" "$large/kodim01-$LARGE.png"
    for tiles in default none; do
        python3 "$REPO/benchmarks/device_decode.py" --weights weights --images "$large" --qualities 4 \
            --device "$DEVICE" --repeats 1 --tiles $tiles --out "$OUT/logs/device_decode_large_$tiles.md"
    done
    python3 -m pytest -q -p no:cacheprovider "$REPO/tests/test_vectors.py" "$REPO/tests/test_spec_decoder.py" \
        2>&1 | tee "$OUT/logs/tests.log"
    ;;
*)
    usage
    ;;
esac

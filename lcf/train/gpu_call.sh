#!/usr/bin/env bash
# One call on the lent GPU machine (see /work/.library/device and the README's "Training on a GPU"): set up, run one
# job, leave what must come back under $OUT (at most 8 files of 16 MiB). Run from the repository root:
#
#   bash lcf/train/gpu_call.sh fit new|resume MINUTES LR [PRECISION]   train the teacher in runs/gpu
#   bash lcf/train/gpu_call.sh distill MINUTES [PRECISION]              cfg2/3/4 from runs/gpu, export, time decoders
#   bash lcf/train/gpu_call.sh check                                    time weights/ there, run the exactness tests
#
# fit new:    measures the training step per precision first, and fp32 at batch 32 and 64 for the record
#             (benchmarks/train_throughput.py; unless PRECISION is given, trains with the fastest precision at
#             LCF_BATCH whose loss agrees with fp32 within 1 %), then starts runs/gpu from the shipped weights/ (or
#             from checkpoint parts carried in .ckpt/teacher). A larger LCF_BATCH is the caller's choice.
# fit resume: needs runs/gpu/checkpoint.pt (still there while the machine stays warm) or parts in .ckpt/teacher.
# check:      what a CPU session cannot measure, for the shipped weights/: every decoder's decode time and GPU
#             memory on 3 Kodak images, and on kodim01 resized to 12 megapixels with the codec's CUDA tiles and
#             without (benchmarks/device_decode.py --tiles), then the conformance tests on that machine. Needs the
#             Kodak images in .data/kodak; about 5 minutes.
# Data: every .data/shard-* folder, carried in this call or left by an earlier call of the same warm machine.
# It works in the current folder (.data, .ckpt, runs, weights); LCF_DEVICE, LCF_CROP, LCF_BATCH and LCF_LARGE
# (default cuda, 256, 16, 4032x3024) let tests/test_gpu_call.py run it on the CPU.
set -euo pipefail
: "${OUT:?run this on the device machine, where OUT is set}"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
DEVICE=${LCF_DEVICE:-cuda} CROP=${LCF_CROP:-256} BATCH=${LCF_BATCH:-16} LARGE=${LCF_LARGE:-4032x3024}
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$REPO PYTHONUNBUFFERED=1
if [ "$DEVICE" != cpu ]; then nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv,noheader; fi
DATA=$(ls -d .data/shard-* 2> /dev/null || true)
echo "data: ${DATA:-none}"
need_data() { if [ -z "$DATA" ]; then echo "NO DATA: carry a training shard in .data/shard-NN" >&2; exit 3; fi; }
mkdir -p "$OUT/logs"
trap 'tar czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$OUT/logs"' EXIT

case "$1" in
fit)
    need_data
    mode=$2 minutes=$3 lr=$4 precision=${5:-}
    if [ ! -f runs/gpu/checkpoint.pt ] && [ -f .ckpt/teacher/checkpoint.parts.json ]; then
        python3 -m lcf.train unpack --parts .ckpt/teacher --run runs/gpu
    fi
    if [ "$mode" = resume ] && [ ! -f runs/gpu/checkpoint.pt ]; then
        echo "NO CHECKPOINT: runs/gpu is gone (a fresh machine); carry the last parts in .ckpt/teacher" >&2
        exit 3
    fi
    if [ -z "$precision" ]; then
        python3 "$REPO/benchmarks/train_throughput.py" --data $DATA --weights weights --device "$DEVICE" \
            --crop "$CROP" --batch "$BATCH" \
            --out "$OUT/logs/train_throughput.md" --choose /tmp/choice
        precision=$(cat /tmp/choice)
    fi
    flags="--precision ${precision%+cl}"
    [ "${precision#*+}" = cl ] && flags="$flags --channels-last"
    echo "training with $flags"
    read -r N M Mz < <(python3 -c "import json; c = json.load(open('weights/manifest.json'))['model_config']; \
print(c['N'], c['M'], c['Mz'])")
    python3 -m lcf.train fit --data $DATA --run runs/gpu --N "$N" --M "$M" --Mz "$Mz" --crop "$CROP" \
        --batch "$BATCH" --lr "$lr" --minutes "$minutes" --device "$DEVICE" $flags --init-weights weights \
        --log-every 250 --save-every 120 \
        2>&1 | tee -a "$OUT/logs/fit.log"
    if [ -f runs/gpu/log.jsonl ]; then cp runs/gpu/log.jsonl "$OUT/logs/"; fi
    python3 -m lcf.train pack --run runs/gpu --out "$OUT/teacher"
    ;;
distill)
    need_data
    minutes=$2 precision=${3:-fp32}
    for s in cfg2 cfg3 cfg4; do
        init=""  # start from the shipped student of that name where weights/ has one, else from a sliced teacher
        if python3 -c "import json, sys; sys.exit('$s' not in json.load(open('weights/manifest.json'))['decoders'])"
        then init="--init-weights weights"; fi
        python3 -m lcf.train distill --teacher-run runs/gpu --student $s $init --data $DATA \
            --run runs/$s-gpu --crop "$CROP" --batch "$BATCH" --lr 1e-4 --minutes "$minutes" --device "$DEVICE" \
            --precision "$precision" --log-every 250 --save-every 120 > "$OUT/logs/$s.log" 2>&1 &
    done
    wait
    tail -n 3 "$OUT"/logs/cfg*.log
    python3 -m lcf.train export --run runs/gpu --out "$OUT/weights" --dtype float16 \
        --student runs/cfg2-gpu --student runs/cfg3-gpu --student runs/cfg4-gpu \
        --notes "trained on the lent H100 from the step-13,120 CPU weights; see weights/README.md"
    for s in cfg2 cfg3 cfg4; do
        if [ -f runs/$s-gpu/log.jsonl ]; then cp runs/$s-gpu/log.jsonl "$OUT/logs/$s-log.jsonl"; fi
    done
    if [ -d .data/kodak ]; then
        python3 "$REPO/benchmarks/device_decode.py" --weights "$OUT/weights" --images .data/kodak \
            --qualities 1,4,7 --device "$DEVICE" --repeats 5 --out "$OUT/logs/device_decode.md"
    fi
    ;;
check)
    if [ ! -d .data/kodak ]; then echo "NO IMAGES: carry the Kodak images in .data/kodak" >&2; exit 3; fi
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
    echo "usage: bash lcf/train/gpu_call.sh fit new|resume MINUTES LR [PRECISION] | distill MINUTES [PRECISION]" \
        "| check" >&2
    exit 2
    ;;
esac

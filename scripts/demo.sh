#!/usr/bin/env bash
# The main job end to end on the sample faces in ../shared, on a fresh machine:
# set up -> extract faces -> pseudo-fakes -> train the dual-branch teacher -> distil the student (two-in-one KD)
# -> evaluate -> calibrate the threshold -> export ONNX -> calibration set -> INT8 (TensorRT Q/DQ + ONNX Runtime CPU)
# -> TensorRT-readiness check (+ engine build and trtexec-style bench where TensorRT and a GPU are) -> detect on images -> screen a folder of generated videos (SQLite + HTML report).
# Small settings so it finishes in under 15 minutes on 2 CPU cores (SIZE, T_EPOCHS, S_EPOCHS, T_PER_EPOCH,
# S_PER_EPOCH, MAX_PER_CLASS, GEOMETRIC, RUN_DIR override them); scripts/train_release.sh trains the release models longer. A re-run resumes training and skips
# finished extraction/screening.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

SHARED=${FFD_SHARED:-../shared}
[[ -d $SHARED/data ]] || { echo "error: sample data not found at $SHARED; fix: set FFD_SHARED=/path/to/shared" >&2; exit 2; }
export FFD_YUNET_MODEL=${FFD_YUNET_MODEL:-$SHARED/models/face_detection_yunet.onnx}
R=${RUN_DIR:-runs/demo}
export FFD_WEIGHTS=${FFD_WEIGHTS:-$SHARED/models}   # ImageNet backbones (offline here; online: cache + URL)
SIZE=${SIZE:-128}
T_EPOCHS=${T_EPOCHS:-1}
S_EPOCHS=${S_EPOCHS:-3}
T_PER_EPOCH=${T_PER_EPOCH:-1500}    # faces drawn per epoch, balanced per source
S_PER_EPOCH=${S_PER_EPOCH:-1500}
GEO=(); [[ -n ${GEOMETRIC:-} ]] && GEO=(--geometric "$GEOMETRIC")   # default: the recipe's (off; docs/training.md)
CAP=(); [[ -n ${MAX_PER_CLASS:-} ]] && CAP=(--max-per-class "$MAX_PER_CLASS")   # default: every face (full test parts)
ffd() { .venv/bin/ffd "$@"; }
T0=$(date +%s)
step() { printf '\n== [%s, %d s] %s\n' "$(date +%T)" $(( $(date +%s) - T0 )) "$*"; }
mkdir -p "$R"

step "1/10 extract faces (YuNet, square crop 1.3x, $SIZE px, 66-point landmarks for the self-blend masks)"
X=(--size "$SIZE" --landmarks "$SHARED/models/openseeface_lm_model0_opt.onnx" --no-progress)
ffd faces extract "$SHARED/data/deepfake_timit_lq" "$R/faces/timit" "${X[@]}"          # person groups + split from labels.csv
ffd faces extract "$SHARED/data/ciplab_real_fake_160/full_160" "$R/faces/ciplab" "${X[@]}"
ffd faces extract "$SHARED/data/london_faces/neutral" "$R/faces/london" --label real "${X[@]}"
ffd faces extract "$SHARED/data/interfaces_cc0/img_500" "$R/faces/interfaces" --label real "${X[@]}"

step "2/10 self-blended pseudo-fakes for inspection (landmark-hull masks)"
ffd faces blend "$R/faces/london" "$R/sbi_preview" --n 8

DATA=(--data "timit=$R/faces/timit" --data "ciplab=$R/faces/ciplab" --data "london=$R/faces/london"
      --data "interfaces=$R/faces/interfaces")
step "3/10 train the dual-branch teacher from ImageNet (EfficientNet-Lite2 spatial + FAD -> MobileNetV2 frequency)"
ffd train teacher "${DATA[@]}" -o "$R/teacher" --size "$SIZE" --epochs "$T_EPOCHS" --samples-per-epoch "$T_PER_EPOCH" \
    "${CAP[@]}" "${GEO[@]}" --lr 5e-4 --no-progress --resume

step "4/10 distil the MobileNetV2 student (two-in-one KD); both print their per-source test table"
ffd train student "${DATA[@]}" -o "$R/student" --kd two-in-one --teacher "$R/teacher/best.pt" \
    --epochs "$S_EPOCHS" --samples-per-epoch "$S_PER_EPOCH" "${CAP[@]}" "${GEO[@]}" --lr 5e-4 --no-progress --resume

step "5/10 evaluate per source on the held-out parts + calibrate the threshold on the validation parts"
ffd eval "$R/student/best.pt" "$R/faces/ciplab" --split test -o "$R/student_eval_ciplab.json" --roc "$R/student_roc.png"
ffd calibrate-threshold "$R/student/best.pt" "$R/faces/timit" "$R/faces/ciplab" -o "$R/student.pt"

step "6/10 export ONNX (graph cleanup, metadata, parity vs PyTorch)"
ffd export "$R/student.pt" -o "$R/student.onnx" --parity-data "$R/faces/london/crops"

step "7/10 calibration set from real faces (+ pseudo-fakes), preprocessed by the model's spec"
ffd calib build -m "$R/student.onnx" -o "$R/calib" --data "$SHARED/data/london_faces/smiling" \
    --data "$SHARED/data/interfaces_cc0/img_500" --data "$SHARED/data/london_faces/canada" \
    --data "$SHARED/data/ciplab_real_fake_160/full_160/real" --n 512

step "8/10 INT8: Model Optimizer Q/DQ (TensorRT) and ONNX Runtime U8S8 (CPU), with an FP32-vs-INT8 report"
ffd quantize "$R/student.onnx" --calib "$R/calib" --target both -o "$R/int8" --high-precision fp32 \
    --eval "$SHARED/data/ciplab_real_fake_160/full_160" --eval-n 256

step "9/10 TensorRT-readiness of the Q/DQ model (no GPU needed), the engine where a GPU is, detection on images"
ffd check-onnx "$R"/int8/*trt*.onnx
if why=$(.venv/bin/python -c "from edge.runtime import trt_unusable_reason as r; print(r() or '')") && [[ -z $why ]]; then
  ffd build-engine "$R"/int8/*trt*.onnx --max-batch 32 --timing-cache "$R/int8/timing.cache"
  ffd bench "$R"/int8/*trt*.engine --backend trt --batch-sizes 1,8,32 -o "$R/bench_trt"
else
  echo "TensorRT engine: skipped here ($why)"
fi
ffd detect "$SHARED/data/ciplab_real_fake_160/full_160/fake" -m "$R"/int8/*cpu*.onnx -o "$R/detect.jsonl"

step "10/10 screen an archive of generated videos: SQLite (resumable) + HTML report"
.venv/bin/python scripts/make_videos.py "$R/videos" --n 6
ffd screen "$R/videos" -m "$R"/int8/*cpu*.onnx --db "$R/screen.db" --report "$R/report.html"

echo
echo "done in $(( ($(date +%s) - T0) / 60 )) min $(( ($(date +%s) - T0) % 60 )) s (after setup): $R (teacher/, student/, student.onnx, int8/, detect.jsonl, screen.db, report.html)"

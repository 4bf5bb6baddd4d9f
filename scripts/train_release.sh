#!/usr/bin/env bash
# The release models on all of ../shared (resumable: re-run after a kill and every finished step is kept):
# extract faces (YuNet + 66-point landmarks, 224 px crops) -> ImageNet-initialised dual-branch teacher
# (EfficientNet-Lite2 spatial + FAD -> MobileNetV2 frequency) -> two-in-one KD into a MobileNetV2 student
# -> threshold on the per-source validation parts -> ONNX -> calibration faces -> INT8 (TensorRT Q/DQ and
# ONNX Runtime U8S8). Every training run prints and stores (eval_sources.json, the card) its figures per
# source on held-out people/faces: DeepfakeTIMIT val people, ciplab test, self-blends of held-out reals.
# Budget knobs (env): SIZE, TEACHER_EPOCHS, STUDENT_EPOCHS, PER_EPOCH (faces drawn per epoch), GEOMETRIC
# (ArchiveAugment.geometric; default: the recipe's, off), RUN_DIR, FACES_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/ffd ]] || bash scripts/setup.sh
SHARED=${FFD_SHARED:-../shared}
[[ -d $SHARED/data/deepfake_timit_lq ]] || { echo "error: $SHARED/data/deepfake_timit_lq not found; fix: set FFD_SHARED=/path/to/shared" >&2; exit 2; }
export FFD_YUNET_MODEL=${FFD_YUNET_MODEL:-$SHARED/models/face_detection_yunet.onnx}
export FFD_WEIGHTS=${FFD_WEIGHTS:-$SHARED/models}            # ImageNet backbones (offline); online: the cache/URL
LMK=${FFD_LANDMARK_MODEL:-$SHARED/models/openseeface_lm_model0_opt.onnx}
R=${RUN_DIR:-runs/release}
F=${FACES_DIR:-runs/faces224}
SIZE=${SIZE:-128}
PER_EPOCH=${PER_EPOCH:-3000}
GEO=(); [[ -n ${GEOMETRIC:-} ]] && GEO=(--geometric "$GEOMETRIC")   # default: the recipe's (off; docs/training.md)
ffd() { .venv/bin/ffd "$@"; }
step() { printf '\n== [%s] %s\n' "$(date +%T)" "$*"; }
T0=$(date +%s)
mkdir -p "$R"

step "1/6 faces: YuNet, square 1.3x, 224 px, 66 landmarks (re-runs skip finished files)"
X=(--size 224 --landmarks "$LMK" --no-progress)
ffd faces extract "$SHARED/data/deepfake_timit_lq" "$F/timit" "${X[@]}"
ffd faces extract "$SHARED/data/ciplab_real_fake_160/full_160" "$F/ciplab" "${X[@]}"
ffd faces extract "$SHARED/data/london_faces/neutral" "$F/london" --label real "${X[@]}"
ffd faces extract "$SHARED/data/london_faces/canada" "$F/canada" --label real "${X[@]}"
ffd faces extract "$SHARED/data/interfaces_cc0/img_500" "$F/interfaces" --label real "${X[@]}"
DATA=(--data "timit=$F/timit" --data "ciplab=$F/ciplab" --data "london=$F/london" --data "canada=$F/canada"
      --data "interfaces=$F/interfaces")

step "2/6 teacher: teacher_dual_lite2 at $SIZE px"
ffd train teacher "${DATA[@]}" -o "$R/teacher" --size "$SIZE" --epochs "${TEACHER_EPOCHS:-3}" \
    --samples-per-epoch "$PER_EPOCH" "${GEO[@]}" --lr 5e-4 --no-progress --resume

step "3/6 student: mobilenetv2_100, two-in-one KD from the teacher"
ffd train student "${DATA[@]}" -o "$R/student" --kd two-in-one --teacher "$R/teacher/best.pt" \
    --epochs "${STUDENT_EPOCHS:-6}" --samples-per-epoch "$PER_EPOCH" "${GEO[@]}" --lr 5e-4 --no-progress --resume

step "4/6 threshold on the per-source validation parts (never the reported test parts)"
ffd calibrate-threshold "$R/student/best.pt" "$F/timit" "$F/ciplab" -o "$R/student.pt"

step "5/6 ONNX + calibration faces (real, never trained on: london smiling, ciplab face_crops reals)"
ffd export "$R/student.pt" -o "$R/student.onnx" --parity-data "$F/london/crops"
ffd calib build -m "$R/student.onnx" -o "$R/calib" --data "$SHARED/data/london_faces/smiling" \
    --data "$SHARED/data/interfaces_cc0/img_500" --data "$SHARED/data/ciplab_real_fake_160/full_160/real" --n 512

step "6/6 INT8, both flavours, FP32-vs-INT8 AUC on ciplab"
ffd quantize "$R/student.onnx" --calib "$R/calib" --target both -o "$R/int8" --high-precision fp32 \
    --eval "$SHARED/data/ciplab_real_fake_160/full_160" --eval-n 400

echo
echo "done in $(( ($(date +%s) - T0) / 60 )) min: $R (teacher/, student/, student.onnx, int8/); per-source figures:"
cat "$R/student/eval_sources.json" | .venv/bin/python -c "import json,sys; d=json.load(sys.stdin); [print(f'  {k}: frame AUC {v[\"frame\"][\"auc\"]:.4f}, video AUC {v[\"video\"][\"auc\"]:.4f}') for k,v in d.items()]"

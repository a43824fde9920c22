#!/usr/bin/env bash
# The world campaign (issue "A world that follows its actions"), one stage at a time, resumable.
#
#   benchmarks/campaign.sh STAGE [STAGE ...]      stages: data heldout vae idm train eval
#
# Every stage skips or resumes what a previous call (or session) left in $ROOT, so the same line can
# be run again after the machine was lost: data is collected from its documented seeds, the VAE and
# the IDM are taken from the package when they ship there, and the world run resumes exactly from
# $ROOT/runs/$NAME or, when that is gone, warm-starts from the committed world ($INIT).
#
# Settings (environment): ROOT (/work/campaign), EPISODES (300), WORKERS (collection processes, 2),
# NAME (rad), MEMORY (lstm; none for the DF twin), BUDGET (CPU-minutes of this run in all, 480),
# THREADS (torch threads, 1), STEPS (run step to stop at, 1000000: the budget decides), DEVICE (cpu; cuda on a GPU machine), INIT (world to warm-start from
# when the run is new; default the shipped world, or its DF twin for MEMORY=none), EXTRA (more --set overrides for rad train). The VAE and the IDM judge ship
# in rad_env/weights/ (memory-maze-9x9-vae, memory-maze-9x9-idm); VAE= / IDM= point elsewhere.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="${ROOT:-/work/campaign}" EPISODES="${EPISODES:-300}" NAME="${NAME:-rad}"
MEMORY="${MEMORY:-lstm}" BUDGET="${BUDGET:-480}" THREADS="${THREADS:-1}" DEVICE="${DEVICE:-cpu}"
STEPS="${STEPS:-1000000}"
INIT="${INIT-$here/rad_env/weights/memory-maze-9x9$([ "${MEMORY:-lstm}" = none ] && echo -df || true)}" EXTRA="${EXTRA:-}" WORKERS="${WORKERS:-2}"
export MUJOCO_GL="${MUJOCO_GL:-egl}" WANDB_MODE="${WANDB_MODE:-offline}"
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
DATA="$ROOT/data/maze9" HELDOUT="$ROOT/data/maze9-heldout" EVALSET="$ROOT/data/maze9-eval"
SHIPPED_VAE="$here/rad_env/weights/memory-maze-9x9-vae"
SHIPPED_IDM="$here/rad_env/weights/memory-maze-9x9-idm"
VAE="${VAE:-$([ -d "$SHIPPED_VAE" ] && echo "$SHIPPED_VAE" || echo "$ROOT/vae/f4c8")}"
IDM="${IDM:-$([ -d "$SHIPPED_IDM" ] && echo "$SHIPPED_IDM" || echo "$ROOT/idm/maze9")}"
mkdir -p "$ROOT/logs"

# The recipe (the 2026-12-03 bake-off's winner, docs/training.md): latent RAD on the f4 VAE
# (8x16x16 latents, patch 4: 16 tokens a frame), T = 32, diffusion-forcing (independent) context.
RECIPE=(--config cpu-small --vae "$VAE" --set model.latent_channels=8 --set model.latent_size=16
        --set model.patch_size=4 --set train.seq_len=32
        --set "model.memory=\"$MEMORY\"" --set train.num_workers=0 --set train.checkpoint_every=100)

for stage in "$@"; do
  case "$stage" in
    data)  # 1000-step episodes of the real simulator, random-walk policy, seed 1
      rad collect --env memory-maze-9x9 --episodes "$EPISODES" --steps 1000 --workers "$WORKERS" \
        --out "$DATA" --seed 1 ;;
    heldout)  # episodes no world trains on (lockstep), and the outbound-and-return set
      rad collect --env memory-maze-9x9 --episodes 16 --steps 1000 --workers "$WORKERS" --out "$HELDOUT" --seed 777
      rad make-evalset --env memory-maze-9x9 --trajectories 48 --out "$EVALSET" --seed 1000 --workers "$WORKERS" ;;
    vae)
      if [ "$VAE" = "$SHIPPED_VAE" ]; then echo "vae: shipped ($VAE)"; else
        rad train-vae --data "$DATA" --out "$VAE" --channels 16,32,64 --latent-channels 8 \
          --recon-loss l1_ssim --batch-size 32 --lr 1e-3 --steps 3000 --max-episodes 48 \
          --device "$DEVICE" --resume
        rad latent-range --vae "$VAE" --data "$DATA" --no-progress; fi ;;  # the sampler's clip
    idm)
      if [ "$IDM" = "$SHIPPED_IDM" ]; then echo "idm: shipped ($IDM)"; else
        rad train-idm --data "$DATA" --out "$IDM" --steps 2000 --device "$DEVICE" --resume; fi ;;
    train)
      run="$ROOT/runs/$NAME" warm=()
      if [ ! -f "$run/train_state.pt" ] && [ -n "$INIT" ]; then warm=(--init-from "$INIT"); fi
      # shellcheck disable=SC2086
      rad train --data "$DATA" "${RECIPE[@]}" $EXTRA "${warm[@]}" --out "$run" --device "$DEVICE" \
        --steps "$STEPS" --budget-minutes "$BUDGET" --keep-every 500 --resume --no-progress --compile \
        >> "$ROOT/logs/$NAME.log" 2>&1 ;;
    eval)  # lockstep on held-out episodes at the worlds' own samplers
      rad eval --protocol lockstep --idm "$IDM" --checkpoint "$ROOT/runs/$NAME" \
        --data "$HELDOUT" --context-frames 24 --predict-frames 300 --max-trajectories 12 \
        --out "$ROOT/reports/$NAME-lockstep" --device "$DEVICE" --no-progress ;;
    *) echo "unknown stage $stage (data heldout vae idm train eval)" >&2; exit 2 ;;
  esac
done

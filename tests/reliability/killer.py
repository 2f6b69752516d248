"""Run ``bertpress distill`` in this process and SIGKILL it at a chosen point (used by the kill/resume tests).

Usage: python killer.py POINT STEP RECIPE [distill args...]
  mid-checkpoint   die inside the checkpoint save at STEP, after the weights are written, before it is complete
  after-checkpoint die right after the checkpoint at STEP is complete
  mid-step         die inside optimizer step STEP+1, between backward and the optimizer update
  publish          die while the final student is being written
  ctrl-c           Ctrl-C (SIGINT) right after the checkpoint at STEP is complete: the CLI exits 130
"""

import os
import signal
import sys

import accelerate

from bertpress.cli import main
from bertpress.train import checkpoint, distiller, output


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


point, step = sys.argv[1], int(sys.argv[2])
if point == "mid-checkpoint":
    original = accelerate.Accelerator.save_state

    def save_state(self, output_dir=None, **kw):
        original(self, output_dir, **kw)
        if output_dir.endswith(f"step-{step:08d}.tmp"):
            die()

    accelerate.Accelerator.save_state = save_state
elif point == "after-checkpoint":
    original_save = checkpoint.save_checkpoint

    def save_checkpoint(acc, root, state, keep, extra=None):
        path = original_save(acc, root, state, keep, extra)
        if state.step == step:
            die()
        return path

    distiller.save_checkpoint = save_checkpoint
elif point == "ctrl-c":
    original_save = checkpoint.save_checkpoint

    def save_checkpoint(acc, root, state, keep, extra=None):
        path = original_save(acc, root, state, keep, extra)
        if state.step == step:
            os.kill(os.getpid(), signal.SIGINT)
        return path

    distiller.save_checkpoint = save_checkpoint
elif point == "mid-step":
    calls = {"n": 0}
    original_clip = accelerate.Accelerator.clip_grad_norm_

    def clip(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == step + 1:
            die()
        return original_clip(self, *a, **kw)

    accelerate.Accelerator.clip_grad_norm_ = clip
elif point == "publish":
    original_publish = output.atomic_write_json

    def write_json(path, obj):
        if str(path).endswith("bertpress.json"):
            die()
        original_publish(path, obj)

    output.atomic_write_json = write_json
else:
    raise SystemExit(f"unknown point {point}")

sys.exit(main(["distill", *sys.argv[3:]]))

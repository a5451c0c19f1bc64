"""Run a recipe under ``torchrun`` (or alone) and save the first step's loss and gradients.

Used by ``test_multiprocess.py``: ``torchrun --nproc_per_node 2 tests/ddp_worker.py RECIPE.json OUT``.
The main process writes ``OUT`` (safetensors: ``loss`` and one entry per student parameter gradient).
"""

import json
import sys

import torch
from safetensors.torch import save_file

from mtvr.train import load_recipe, train


def main() -> None:
    recipe = load_recipe(json.loads(open(sys.argv[1]).read()))
    out = sys.argv[2]
    resume = "--resume" in sys.argv

    def first_step(trainer, step, loss):
        if step == 0 and trainer.accelerator.is_main_process and not trainer.output_dir.name == "teachers":
            if getattr(first_step, "done", False):
                return
            first_step.done = True
            grads = {
                f"grad.{n}": p.grad.detach().clone()
                for n, p in trainer.unwrapped.named_parameters()
                if p.grad is not None
            }
            save_file({"loss": loss.reshape(1).float(), **grads}, out)

    train(recipe, resume=resume, progress=False, log=print, step_callback=first_step)
    torch.distributed.destroy_process_group() if torch.distributed.is_initialized() else None


if __name__ == "__main__":
    main()

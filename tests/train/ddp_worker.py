"""`maxvit ARGS` for torchrun that also saves every rank's final weights (for test_ddp.py).

Training itself writes files from rank 0 only; to compare the ranks, this wrapper saves
``RUN/rank<R>.safetensors`` from each process after `train` returns.
"""

from __future__ import annotations

import sys

from safetensors.torch import save_file

from maxvit.cli import main
from maxvit.train import trainer

_run = trainer._Run.run


def _run_and_save_rank_weights(self):
    out = _run(self)
    weights = {k: v.detach().clone().contiguous() for k, v in self.model.state_dict().items()}
    save_file(weights, str(out / f"rank{self.ctx.rank}.safetensors"))
    return out


trainer._Run.run = _run_and_save_rank_weights

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

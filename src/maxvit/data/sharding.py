"""What one rank loads of each epoch: the batch, the seed, its place among the ranks, its workers.

One small value passed down from `build_train_loader` / `build_eval_loader` to the loaders and
their worker-side datasets, instead of the same five arguments at every level.
"""

from __future__ import annotations

from dataclasses import dataclass

from maxvit.errors import UserError


@dataclass(frozen=True)
class Sharding:
    """How one rank's share of a split is loaded (checked at construction)."""

    batch_size: int  # samples per batch on this rank
    seed: int  # the epoch plans and every per-sample random draw derive from it
    rank: int = 0  # this process among `world_size` (torchrun's RANK)
    world_size: int = 1  # processes sharing each epoch
    num_workers: int = 0  # loader worker processes of this rank (0: the main process)

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise UserError(f"rank {self.rank} is not in 0..{self.world_size - 1}")
        if self.batch_size < 1:
            raise UserError(f"batch size must be positive, got {self.batch_size}")
        if self.seed < 0:
            raise UserError(f"seed must be >= 0, got {self.seed}")
        if self.num_workers < 0:
            raise UserError(f"num_workers must be >= 0, got {self.num_workers}")

"""timm's model API for `MaxVit`: intermediate maps, pruning, parameter groups, checkpointing.

`TimmContract` is a mixin with the methods timm's tools call on a model beyond ``forward``
(feature extraction, ``FeatureGetterNet``, layer-wise lr decay, the weight-decay split,
activation checkpointing), with timm's signatures and semantics. It reads the attributes
`MaxVit` builds: ``stem``, ``stages`` (an ``nn.Sequential`` of stages, each an
``nn.Sequential`` of blocks), ``head_norm``, ``pre_logits``, ``head``, ``feature_info``,
``num_features``, ``head_hidden_size`` and ``grad_checkpointing``; and `_run_stage` and
`reset_classifier`. tests/models/test_timm_contract.py runs timm's own assertions on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from maxvit.errors import UserError

OUTPUT_FORMATS = ("NCHW", "NHWC")  # NHWC: the layout attention runs in, a free view here
Indices = int | Sequence[int] | None  # timm's: all (None), the last n (int), or these (negatives)


class TimmContract:
    """timm's model API on top of `MaxVit` (see the module docstring for what it reads)."""

    stem: nn.Module
    stages: nn.Sequential
    head: nn.Module
    feature_info: list[dict[str, Any]]
    num_features: int
    head_hidden_size: int
    grad_checkpointing: bool

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Indices = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The maps of `feature_info` (index 0 the stem, 1.. the stages), for detection and
        segmentation backbones (timm's signature).

        Args:
            indices: None for all; an int n for the last n; or a list of indices, negative ones
                counting from the end.
            norm: accepted for timm's signature; no norm acts on the last stage map here (the
                head's LayerNorm acts on pooled features), so it changes nothing.
            stop_early: run no stage after the last index wanted (then the first return value
                is that stage's map).
            output_fmt: "NCHW" or "NHWC" for the returned maps.
            intermediates_only: return only the maps (and stop early).
        Returns:
            the maps, or (last map computed, the maps).
        """
        if output_fmt not in OUTPUT_FORMATS:
            raise UserError(f"output_fmt must be NCHW or NHWC, got {output_fmt!r}")
        take, last = self._take_indices(indices)
        x = self.stem(x)
        maps = [x] if 0 in take else []
        stages = self.stages[:last] if stop_early or intermediates_only else self.stages
        for i, stage in enumerate(stages, 1):
            x = self._run_stage(stage, x)
            if i in take:
                maps.append(x)
        if output_fmt == "NHWC":
            maps = [m.permute(0, 2, 3, 1) for m in maps]
        return maps if intermediates_only else (x, maps)

    def prune_intermediate_layers(
        self,
        indices: Indices = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages after the last of `indices` (see `forward_intermediates`) and, with
        `prune_head` or when stages were dropped, the whole head (norm, pre-logits, classifier,
        pooling); returns the indices. `prune_norm` is accepted for timm's signature (there is
        no norm outside the head)."""
        take, last = self._take_indices(indices)
        if last < len(self.stages):
            self.stages = self.stages[:last]
            self.feature_info = self.feature_info[: last + 1]
            self.num_features = self.head_hidden_size = self.feature_info[last]["num_chs"]
            prune_head = True
        if prune_head:
            self.head_norm = nn.Identity()
            self.pre_logits = nn.Identity()
            self.reset_classifier(0, "")
        return take

    def _take_indices(self, indices: Indices) -> tuple[list[int], int]:
        """(sorted map indices, the largest) for `indices` as timm's ``feature_take_indices``
        reads them; UserError for an index outside the maps."""
        count = len(self.stages) + 1
        if indices is None:
            take = list(range(count))
        elif isinstance(indices, int):
            if not 0 < indices <= count:
                raise UserError(f"indices={indices} asks for the last {indices} of {count} maps")
            take = list(range(count - indices, count))
        else:
            bad = sorted(i for i in indices if not -count <= i < count)
            if bad:
                raise UserError(
                    f"feature indices {bad} are outside 0..{count - 1} (or -{count}..-1)"
                )
            take = sorted({i % count for i in indices})
        if not take:
            raise UserError("indices selects no feature map")
        return take, take[-1]

    def get_classifier(self) -> nn.Module:
        """The final Linear layer, or Identity without a classifier (timm's convention)."""
        return self.head

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Stage-level activation checkpointing (timm's convention): the same gradients for much
        less activation memory, at the price of a second forward pass of every stage."""
        self.grad_checkpointing = enable

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups in depth order for timm's layer-wise lr decay (``group_parameters``,
        ``param_groups_layer_decay``, ``create_optimizer_v2(layer_decay=...)``): the stem, then
        one group per block (per stage if `coarse`), then the head."""
        return dict(
            stem=r"^stem\.",
            blocks=r"^stages\.(\d+)\." if coarse else r"^stages\.(\d+)\.(\d+)\.",
            head=r"^(?:head_norm|pre_logits|head)\.",
        )

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay in the `paper` recipe: norms, biases and
        relative-position tables (all 1-D, plus the tables)."""
        named = self.named_parameters()  # type: ignore[attr-defined]
        return {n for n, p in named if p.ndim <= 1 or n.endswith("rel_pos.table")}

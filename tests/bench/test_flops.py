"""The corrected FLOP counter against a hand count, and against the stock counter's faults."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from maxvit.bench.flops import count_flops

# Tiny model: 1x1 conv 4->8, depthwise 3x3 (groups 8), attention over the 6x6=36 positions
# with 2 heads of 4 channels (q = k = v = the features), mean over tokens, linear 8->3.
C_IN, C, S, HEADS, HEAD_DIM, OUT = 4, 8, 6, 2, 4, 3
N = S * S

# Hand count per image, 2 FLOPs per multiply-add.
PW_FWD = 2 * N * C_IN * C  # 1x1 conv
DW_FWD = 2 * N * 9 * C  # depthwise: 9 taps per output element, one input channel each
ATTN_FWD = 2 * (2 * HEADS * N * N * HEAD_DIM)  # q @ k^T and p @ v
FC_FWD = 2 * C * OUT
FORWARD = PW_FWD + DW_FWD + ATTN_FWD + FC_FWD
# Backward: every layer's weight gradient costs its forward; its input gradient too, except
# the first conv (the image needs no gradient); attention backward is four matmuls (2x).
BACKWARD = PW_FWD + 2 * DW_FWD + 2 * ATTN_FWD + 2 * FC_FWD


class Tiny(nn.Module):
    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.fused = fused
        self.pw = nn.Conv2d(C_IN, C, 1, bias=False)
        self.dw = nn.Conv2d(C, C, 3, padding=1, groups=C, bias=False)
        self.fc = nn.Linear(C, OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(self.pw(x))
        b = x.shape[0]
        t = x.flatten(2).transpose(1, 2).reshape(b, N, HEADS, HEAD_DIM).transpose(1, 2)
        t = t.contiguous()  # contiguous q/k/v: CPU SDPA takes its fused flash kernel
        if self.fused:
            o = F.scaled_dot_product_attention(t, t, t)
        else:
            o = torch.softmax(t @ t.transpose(-2, -1) * HEAD_DIM**-0.5, dim=-1) @ t
        return self.fc(o.transpose(1, 2).reshape(b, N, C).mean(1))


def test_corrected_counts_equal_the_hand_count() -> None:
    torch.manual_seed(0)
    flops = count_flops(Tiny(fused=True), torch.randn(1, C_IN, S, S))
    assert flops.forward == FORWARD
    assert flops.train == FORWARD + BACKWARD
    assert flops.forward_attention == ATTN_FWD


def test_counts_scale_with_batch() -> None:
    flops = count_flops(Tiny(fused=True), torch.randn(3, C_IN, S, S))
    assert flops.forward == 3 * FORWARD and flops.train == 3 * (FORWARD + BACKWARD)


def test_fused_and_explicit_attention_count_the_same() -> None:
    x = torch.randn(1, C_IN, S, S)
    assert count_flops(Tiny(fused=True), x) == count_flops(Tiny(fused=False), x)


def test_stock_counter_has_the_faults_we_correct() -> None:
    # If torch fixes either fault, this fails and the corrections should be revisited.
    model = Tiny(fused=True)
    with FlopCounterMode(display=False) as stock:
        model(torch.randn(1, C_IN, S, S)).sum().backward()
    counts = {str(k): v for k, v in stock.get_flop_counts()["Global"].items()}
    assert not any("attention" in op or "bmm" in op for op in counts)  # SDPA on CPU: uncounted
    # Depthwise weight gradient counted C (= groups) times: input grad + C * weight grad,
    # plus the 1x1 conv's weight gradient.
    assert counts["aten.convolution_backward"] == DW_FWD + C * DW_FWD + PW_FWD

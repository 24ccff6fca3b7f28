"""The CUDA paths, run where there is a GPU (`tools/device-check` runs them there).

Skipped without CUDA: the CPU suite proves what it can (autocast on the CPU in
tests/train/test_precision.py, the no-sync step in tests/train/test_sync.py); these are the
parts only a GPU can check.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_training_step_in_reduced_precision(precision):
    from maxvit.device import autocast
    from maxvit.models import create_model

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no native bf16")
    cuda = torch.device("cuda")
    model = (
        create_model("maxvit_tiny", num_classes=10).to(cuda).to(memory_format=torch.channels_last)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    x = torch.randn(4, 3, 224, 224, device=cuda).to(memory_format=torch.channels_last)
    with autocast(cuda, precision):
        loss = torch.nn.functional.cross_entropy(model(x).float(), torch.arange(4, device=cuda))
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_sdpa_equals_explicit_attention_on_cuda():
    from maxvit.models.layers import Attention

    torch.manual_seed(0)
    sdpa = Attention(64, 32, 7, impl="sdpa").cuda()
    explicit = Attention(64, 32, 7, impl="explicit").cuda()
    explicit.load_state_dict(sdpa.state_dict())
    torch.nn.init.normal_(sdpa.rel_pos.table, std=0.5)
    explicit.rel_pos.table.data.copy_(sdpa.rel_pos.table.data)
    x = torch.randn(16, 49, 64, device="cuda", requires_grad=True)
    a, b = sdpa(x), explicit(x)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    ga = torch.autograd.grad(a.sum(), sdpa.rel_pos.table)[0]
    gb = torch.autograd.grad(b.sum(), explicit.rel_pos.table)[0]
    torch.testing.assert_close(ga, gb, atol=1e-3, rtol=1e-3)


def test_channels_last_gives_the_same_logits_on_cuda():
    from maxvit.models import create_model

    torch.manual_seed(0)
    model = create_model("maxvit_tiny", num_classes=10).cuda().eval()
    x = torch.randn(2, 3, 224, 224, device="cuda")
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-3, rtol=1e-3)


def test_fused_adamw_equals_the_default_on_cuda():
    torch.manual_seed(0)
    start = [torch.randn(256, 256, device="cuda") for _ in range(4)]
    grads = [torch.randn_like(p) for p in start]
    results = []
    for fused in (True, None):
        params = [p.clone().requires_grad_() for p in start]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05, fused=fused).step()
        results.append(params)
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_a_two_process_nccl_ddp_step(synth_data, tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        str(worker), "train", "--preset", "smoke", "--data", str(synth_data), "--out", str(tmp_path / "run"),
        "--set", "epochs=1", "--set", "steps_per_epoch=2",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "on cuda:0 (x2)" in proc.stderr

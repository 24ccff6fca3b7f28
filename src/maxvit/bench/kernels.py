"""``maxvit bench kernels``: the single-op comparisons behind this project's speed choices.

Each case times two ways of computing the same thing at MaxViT-T shapes (batch 8, 224x224,
channels_last, fp32, on the CPU), interleaved round by round, and prints the median of each
and their ratio. Each way returns what it computed, so that the tests can check that the two
agree (`TOLERANCE`). The cases:

* ``gelu``: tanh-approximated GELU (the official weights' activation) against the exact GELU
  torchvision uses, forward + backward on the widest MBConv activation;
* ``attention``: explicit softmax attention against ``scaled_dot_product_attention`` with the
  relative-position bias as ``attn_mask``, stage-1 window shapes, in inference;
* ``same-pad``: `SamePad` against ``nn.ZeroPad2d`` before the stride-2 depthwise conv,
  forward + backward, summed over the four strided MBConvs;
* ``strided-inference``: pad + 3x3 against the 4x4 zero-extended kernel of the fused copy
  (`maxvit.models.fuse`), inference, the four strided depthwise convs;
* ``adamw``: fused AdamW against PyTorch's default multi-tensor AdamW, one step over
  ``maxvit_tiny``'s parameters;
* ``bf16-matmul``: a 512 x 512 fp32 matrix product against the same in bf16 (whether this
  CPU has fast bf16 units: without them bf16 is slower, so CPU training stays in fp32);
* ``jpeg-decode``: `maxvit.data.images.decode_rgb` (libjpeg-turbo through simplejpeg) against
  PIL's decode and RGB conversion, 16 synthetic 500x375 JPEGs (ImageNet's typical size);
* ``crop-resize``: the loader's crop resize (torch's uint8 antialiased bilinear kernel on the
  channels-last view of the decoded array) against PIL's ``resize(box=...)``, the same 16
  regions of 70% of the side to 224x224.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from maxvit.errors import UserError

# (channels, map side) entering each of MaxViT-T's four stride-2 depthwise convs, batch 8.
STRIDED = ((256, 112), (512, 56), (1024, 28), (2048, 14))


# How closely the two ways of a case agree (max absolute difference); 0 means bit-identical.
TOLERANCE = {
    "gelu": 5e-3,  # two approximations of one function (tanh vs erf), on unit-normal inputs
    "attention": 1e-4,
    "same-pad": 0.0,
    "strided-inference": 1e-3,
    "adamw": 1e-6,
    "bf16-matmul": 0.1,  # bf16 keeps 8 bits of mantissa; the products are about unit size
    "jpeg-decode": 0.0,
    "crop-resize": 8.0,  # two antialiased bilinear kernels on noisy images, uint8 levels
}


def build_case(name: str) -> tuple[str, Callable[[], Any], str, Callable[[], Any]]:
    """(label a, function a, label b, function b) of a case; each function returns its result."""
    cases = _cases()
    if name not in cases:
        raise UserError(f"unknown case(s) {[name]}; choose from: {', '.join(cases)}")
    return cases[name]()


def _cases() -> dict[str, Callable[[], tuple]]:
    """name -> builder returning (label a, function a, label b, function b)."""
    return {
        "gelu": _gelu,
        "attention": _attention,
        "same-pad": _same_pad,
        "strided-inference": _strided_inference,
        "adamw": _adamw,
        "bf16-matmul": _bf16_matmul,
        "jpeg-decode": _jpeg_decode,
        "crop-resize": _crop_resize,
    }


def _gelu():
    import torch
    import torch.nn.functional as F

    x = torch.randn(8, 256, 112, 112).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    g = torch.randn_like(x)

    def run(approximate: str) -> Callable[[], Any]:
        return lambda: torch.autograd.grad(F.gelu(x, approximate=approximate), x, g)

    return "gelu tanh", run("tanh"), "gelu exact (erf)", run("none")


def _attention():
    import torch
    import torch.nn.functional as F

    q, k, v = (torch.randn(512, 2, 49, 32) for _ in range(3))  # stage 1: 512 windows, 2 heads
    bias = torch.randn(2, 49, 49)

    @torch.inference_mode()
    def explicit() -> Any:
        return ((q * 32**-0.5) @ k.transpose(-2, -1) + bias).softmax(-1) @ v

    @torch.inference_mode()
    def sdpa() -> Any:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)

    return "explicit attention", explicit, "SDPA with bias mask", sdpa


def _same_pad():
    import torch
    import torch.nn.functional as F
    from torch import nn

    from maxvit.models.layers import SamePad

    data = []
    for c, side in STRIDED:
        x = torch.randn(8, c, side, side).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c, 1, 3, 3, requires_grad=True)
        data.append((x.requires_grad_(), w, c))

    def run(pad: nn.Module) -> Callable[[], Any]:
        def step() -> list[torch.Tensor]:
            grads = []
            for x, w, c in data:
                y = F.conv2d(pad(x), w, None, 2, 0, 1, c)
                grads += torch.autograd.grad(y, (x, w), torch.ones_like(y))
            return grads

        return step

    return "SamePad", run(SamePad(3)), "nn.ZeroPad2d", run(nn.ZeroPad2d((0, 1, 0, 1)))


def _strided_inference():
    import torch
    import torch.nn.functional as F

    from maxvit.models.layers import SamePad

    data = []
    for c, side in STRIDED:
        x = torch.randn(8, c, side, side).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c, 1, 3, 3)
        data.append((x, w, F.pad(w, (1, 0, 1, 0)), c))
    pad = SamePad(3)

    @torch.inference_mode()
    def padded() -> list[torch.Tensor]:
        return [F.conv2d(pad(x), w, None, 2, 0, 1, c) for x, w, _, c in data]

    @torch.inference_mode()
    def kernel4() -> list[torch.Tensor]:
        return [F.conv2d(x, w4, None, 2, 1, 1, c) for x, _, w4, c in data]

    return "4x4 kernel, padding 1", kernel4, "pad + 3x3", padded


def _adamw():
    import torch

    from maxvit.models import create_model

    start = [p.detach() for p in create_model("maxvit_tiny").parameters()]
    grads = [torch.randn_like(p) for p in start]

    def optimizer(fused: bool | None) -> Callable[[], Any]:
        params = [p.clone().requires_grad_() for p in start]
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05, fused=fused)

        def step() -> list[torch.Tensor]:
            opt.step()
            return params

        return step

    return "AdamW fused", optimizer(True), "AdamW default", optimizer(None)


def _bf16_matmul():
    import torch

    a = torch.randn(512, 512) / 512**0.5
    b = torch.randn(512, 512)
    a16, b16 = a.bfloat16(), b.bfloat16()

    def fp32() -> Any:
        return a @ b

    def bf16() -> Any:
        return (a16 @ b16).float()

    return "fp32 matmul", fp32, "bf16 matmul", bf16


def _jpegs(n: int = 16) -> list[bytes]:
    """n synthetic 500x375 photos-like JPEGs (smooth gradients plus noise), quality 90."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500]
    out = []
    for i in range(n):
        base = np.stack([xx * 0.4 + i * 9, yy * 0.5, (xx + yy) * 0.25], axis=2)
        pixels = (base + rng.normal(0, 18, base.shape)).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _jpeg_decode():
    import io

    import numpy as np
    from PIL import Image

    from maxvit.data.images import decode_rgb

    blobs = _jpegs()

    def ours() -> list[np.ndarray]:
        return [decode_rgb(b) for b in blobs]

    def pil() -> list[np.ndarray]:
        return [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs]

    return "simplejpeg (decode_rgb)", ours, "PIL decode + convert", pil


def _crop_resize():
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    from maxvit.data.images import decode_rgb

    arrays = [decode_rgb(b) for b in _jpegs()]
    images = [Image.fromarray(a) for a in arrays]
    box = (10, 10, 360, 272)  # 70% of the side

    def torch_resize() -> list[Any]:
        out = []
        for a in arrays:
            view = torch.from_numpy(a).permute(2, 0, 1)[None, :, box[1] : box[3], box[0] : box[2]]
            out.append(F.resize(view, [224, 224], antialias=True)[0].permute(1, 2, 0).numpy())
        return out

    def pil_resize() -> list[Any]:
        return [
            np.asarray(img.resize((224, 224), Image.Resampling.BILINEAR, box=box)) for img in images
        ]

    return "torch uint8 resize (loader)", torch_resize, "PIL resize(box=...)", pil_resize


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cases",
        default=",".join(_cases()),
        help=f"comma-separated cases (default all: {', '.join(_cases())})",
    )
    parser.add_argument("--rounds", type=int, default=7, help="recorded rounds (default 7)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run_cases(names: list[str], rounds: int) -> list[dict[str, Any]]:
    """Time every case; return one row per case (medians in milliseconds and their ratio)."""
    import torch

    from maxvit.bench.common import median, timed

    cases = _cases()
    unknown = [n for n in names if n not in cases]
    if unknown:
        raise UserError(f"unknown case(s) {unknown}; choose from: {', '.join(cases)}")
    if rounds < 1:
        raise UserError("--rounds must be at least 1")
    cpu = torch.device("cpu")
    rows = []
    for name in names:
        label_a, a, label_b, b = build_case(name)
        times: dict[str, list[float]] = {label_a: [], label_b: []}
        for r in range(rounds + 1):  # round 0 warms up
            for label, fn in ((label_a, a), (label_b, b)):
                t = timed(fn, cpu)
                if r:
                    times[label].append(t)
        ms_a, ms_b = (1e3 * median(times[k]) for k in (label_a, label_b))
        rows.append({"case": name, "a": label_a, "a_ms": ms_a, "b": label_b, "b_ms": ms_b})
    return rows


def run(args: argparse.Namespace) -> int:
    from maxvit.bench.common import apply_threads, format_table
    from maxvit.bench.options import parse_list

    apply_threads(args.threads)
    rows = run_cases(parse_list(args.cases, "cases"), args.rounds)
    table = [
        [
            r["case"],
            r["a"],
            f"{r['a_ms']:.2f}",
            r["b"],
            f"{r['b_ms']:.2f}",
            f"{r['b_ms'] / r['a_ms']:.2f}x",
        ]
        for r in rows
    ]
    print(f"CPU, fp32, median of {args.rounds} rounds (ms); b/a > 1: a is faster")
    print(format_table(["case", "a", "a ms", "b", "b ms", "b/a"], table))
    return 0

"""torch.fx: symbolic tracing and torchvision's `create_feature_extractor` (assertions of timm's
`test_model_forward_fx` / `test_model_backward_fx`, without timm's tracer arguments)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.feature_extraction import create_feature_extractor

from maxvit.models import create_model
from tests.models.small import SMALL_PAPER

MODELS = [
    pytest.param(("maxvit_nano", {}), id="seed-design"),
    pytest.param(("maxvit_tiny", SMALL_PAPER), id="paper-design"),
]


@pytest.fixture(params=MODELS)
def model(request):
    name, overrides = request.param
    torch.manual_seed(0)
    return create_model(name, num_classes=7, drop_path=0.1, **overrides)


def test_create_feature_extractor_returns_two_stages(model):
    x = torch.randn(2, 3, 64, 64)
    extractor = create_feature_extractor(model, return_nodes={"stages.1": "s2", "stages.2": "s3"})
    for mode in ("eval", "train"):
        getattr(extractor, mode)()
        getattr(model, mode)()
        torch.manual_seed(1)  # stochastic depth draws the same in both
        out = extractor(x)
        torch.manual_seed(1)
        maps = model.forward_intermediates(x, indices=[2, 3], intermediates_only=True)
        assert list(out) == ["s2", "s3"]
        for got, expected in zip(out.values(), maps, strict=True):
            assert torch.equal(got, expected), mode


def test_symbolic_trace_equals_the_model_forward_and_backward(model):
    """Tracing records the mode's branches (stochastic depth on or off): one graph per mode."""
    graph = torch.fx.symbolic_trace(model.eval())
    kept_whole = {n.target.__name__ for n in graph.graph.nodes if n.op == "call_function"}
    assert {"attend", "same_pad"} <= kept_whole
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.all(graph(x) == model(x))
    graph = torch.fx.symbolic_trace(model.train())
    graph(x).mean().backward()
    missing = [n for n, p in graph.named_parameters() if p.grad is None]
    assert missing == []
    assert sum(p.grad.numel() for p in graph.parameters()) == sum(
        p.numel() for p in graph.parameters()
    )

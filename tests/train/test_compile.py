"""compile: true trains compiled, falls back to eager if compiling fails; require stops."""

from __future__ import annotations

import pytest
import torch

from maxvit.errors import UserError
from maxvit.train import checkpoint as ckpt
from maxvit.train.trainer import train
from tests.train.utils import interrupt_at_step, read_weights, smoke_config

SHORT = ("epochs=1", "steps_per_epoch=2", "ckpt_every_steps=0")


class _Broken(torch.nn.Module):
    """What torch.compile returns in these tests: it fails when first called."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        raise RuntimeError("inductor could not lower aten::frobnicate\nmore lines")


def test_a_failing_compile_falls_back_to_eager_with_one_warning(
    synth_data, tmp_path, monkeypatch, capsys
):
    reference = train(smoke_config(synth_data, *SHORT), tmp_path / "eager")
    monkeypatch.setattr(torch, "compile", lambda module, **kw: _Broken(module))
    run = train(smoke_config(synth_data, *SHORT, "compile=true"), tmp_path / "run")
    err = capsys.readouterr().err
    assert err.count("warning: torch.compile failed (RuntimeError: inductor could not lower") == 1
    assert "training eager" in err
    final = read_weights(run / "checkpoints" / "last.safetensors")
    expected = read_weights(reference / "checkpoints" / "last.safetensors")
    assert all(torch.equal(final[k], expected[k]) for k in expected)  # as if never compiled


def test_compile_require_stops_with_one_line(synth_data, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module, **kw: _Broken(module))
    with pytest.raises(
        UserError, match=r"torch.compile failed \(RuntimeError: .*\); stopped"
    ) as info:
        train(smoke_config(synth_data, *SHORT, "compile=require"), tmp_path / "run")
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="compile must be true, false or require"):
        smoke_config(synth_data, "compile=sometimes")


@pytest.mark.slow
def test_smoke_trains_and_resumes_compiled_on_the_cpu(synth_data, tmp_path, monkeypatch):
    """Inductor on the CPU (a C++ compiler builds the kernels). The smoke recipe on a MaxViT
    of one one-block stage (every kind of layer): `maxvit_nano`'s five blocks took 4 min to
    compile cold here, two one-block stages 2 min, this model 80 s; the kernels are what this
    test is about, not their number. Later runs in the process reuse the compiled code."""
    from maxvit.models.model import MaxVitConfig
    from maxvit.models.variants import SEED, VARIANTS, Variant

    pico = MaxVitConfig((1,), (32,), 16, partition_size=4, **SEED)
    monkeypatch.setitem(VARIANTS, "maxvit_pico", Variant(pico, 32))
    config = smoke_config(
        synth_data, "model=maxvit_pico", "epochs=1", "steps_per_epoch=4", "ckpt_every_steps=2",
        "compile=require",
    )  # fmt: skip
    reference = train(config, tmp_path / "reference")
    interrupt_at_step(monkeypatch, 3)  # the checkpoint of step 2 is on disk
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run")
    run = train(config, tmp_path / "run", resume=True)
    assert ckpt.load_state(run / "checkpoints" / "last.pt")["progress"]["step"] == 4
    final = read_weights(run / "checkpoints" / "last.safetensors")
    expected = read_weights(reference / "checkpoints" / "last.safetensors")
    torch.testing.assert_close(
        final, expected, rtol=1e-4, atol=1e-5
    )  # compiled kernels may round differently between processes

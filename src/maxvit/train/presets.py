"""The shipped presets: YAML files in ``maxvit/configs`` (torch-free, for ``--help``)."""

from __future__ import annotations

from importlib import resources


def list_presets() -> list[str]:
    """Names of the shipped presets."""
    folder = resources.files("maxvit") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    """The YAML text of preset `name` (a name from `list_presets`)."""
    return (resources.files("maxvit") / "configs" / f"{name}.yaml").read_text()

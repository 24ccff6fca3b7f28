"""REPORT.md, curves.png and (with per-epoch clean-train accuracies) fit.png of a study folder,
from its files only (`rebuild_report`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from maxvit.files import write_text
from maxvit.plots import Curves, plot_curves, plot_fit
from maxvit.recorded import RECORDED
from maxvit.repro.claims import (
    linear_cost_claim,
    matched_fit,
    matched_fit_claim,
    overfitting_claim,
    speed_claim,
)
from maxvit.repro.matched import fit_curve
from maxvit.repro.plan import ROLES
from maxvit.repro.results import ModelResult, StudyResults, load_results


def rebuild_report(out: str | Path) -> Path:
    """(Re)write ``REPORT.md`` and ``curves.png`` in a study folder from its files only."""
    results = load_results(out)
    png = results.out / "curves.png"
    plot_study_curves(results, png)
    maxvit, coatnet = results.role("MaxViT"), results.role("CoAtNet")
    if fit_curve(maxvit.rows) and fit_curve(coatnet.rows):
        levels = [m.level for m, _ in matched_fit(maxvit, coatnet, results.study["data"]["val"])]
        curves = [
            (f"{m.role} ({m.name})", [(p.train, p.val) for p in fit_curve(m.rows)])
            for m in (maxvit, coatnet)
        ]
        plot_fit(curves, levels, results.out / "fit.png", scale_label(results))
    report = results.out / "REPORT.md"
    write_text(report, render_report(results))
    return report


def table_rows(results: StudyResults) -> list[list[str]]:
    """The main table's cells, one row per model (also what the tests compare with the logs)."""
    rows = []
    for m in results.models:
        rows.append(
            [
                f"{m.role}: `{m.name}`",
                f"{m.params / 1e6:.2f}",
                f"{m.gflops_forward:.3f}",
                f"{m.s_per_batch:.3f}",
                f"{m.run_s_per_batch:.3f}",
                f"{m.last['train_acc']:.2f}",
                f"{m.clean_train['top1']:.2f}",
                f"{m.last['val_top1']:.2f}",
                f"{m.last['val_top5']:.2f}",
                f"{m.gap:.2f}",
            ]
        )
    return rows


TABLE_HEADERS = [
    "model",
    "params (M)",
    "GFLOPs/img (fwd)",
    "train s/batch (bench)",
    "s/batch in run",
    "train acc %, augmented stream",
    "clean train top-1 %",
    "val top-1 %",
    "val top-5 %",
    "gap (clean train - val), points",
]


def scale_label(results: StudyResults) -> str:
    """Where and on what this study ran, e.g. 'CPU (2 cores, fp32), mini subset ...'."""
    env, data, recipe = results.study["environment"], results.study["data"], results.recipe
    if env["device"] == "cuda":
        where = f"GPU ({env['device_name']}, bf16 autocast)"
    else:
        where = f"CPU ({env['cpu_count']} cores, {env['threads']} threads, fp32)"
    subset = "full Tiny ImageNet" if data["train"] >= 100_000 else "Tiny ImageNet subset"
    last = results.models[0].last
    return (
        f"{where}, {subset} ({data['train']:,} train / {data['val']:,} val images, "
        f"{data['classes']} classes), {_img_size(results)} px, "
        f"{_count(last['epoch'], 'epoch')} = {_count(last['step'], 'step')} of batch "
        f"{recipe['batch_size']}"
    )


def _img_size(results: StudyResults) -> int:
    return results.bench["config"]["img_size"]


def render_report(results: StudyResults) -> str:
    """The text of REPORT.md."""
    study, recipe = results.study, results.recipe
    maxvit, vit, coatnet = (results.role(r) for r in ROLES)
    batch, img = recipe["batch_size"], _img_size(results)
    scale = scale_label(results)
    chance = 100 / study["data"]["classes"]
    trained = ", ".join(
        f"{m.last['step'] * batch:,} training samples = "
        f"{m.last['step'] * batch / study['data']['train']:.2f} passes over the train split"
        + (f" (`{m.name}`)" if len(results.models) > 1 else "")
        for m in results.models
    )
    length = (
        f" over a {recipe['budget_minutes']:g}-min budget per model"
        if recipe.get("budget_minutes") else ""
    )  # fmt: skip
    if recipe.get("stop_at_fit"):
        fit_at = recipe["stop_at_fit"]
        length += f", each stopped at its first epoch of clean train top-1 >= {fit_at:g}%"
    fit = study.get("plan", {}).get("fit")
    claims = [overfitting_claim(maxvit, coatnet, vit, study["data"]["val"], fit)]
    if (matched := matched_fit_claim(maxvit, coatnet, study["data"]["val"])) is not None:
        claims.append(matched)
    if vit is not None:  # the speed and cost claims compare MaxViT with the ViT
        claims.append(speed_claim(maxvit, vit, batch, img))
        claims.append(linear_cost_claim(results.scaling, maxvit.name, vit.name))
    count = {2: "Two", 3: "Three"}.get(len(results.models), str(len(results.models)))
    phases = study.get("phases", {})
    wall = sum(p["wall_s"] for p in phases.values())
    cpu = sum(p["cpu_s"] for p in phases.values())
    env = study["environment"]
    load = env.get("loadavg_start"), env.get("loadavg_end")
    aug = recipe["aug"]

    lines = [
        f"# Reproduction study, preset `{study['preset']}`",
        "",
        f"**Scale: {scale}.**",
        "",
        f"{count} models trained with one recipe and one budget: preset `{study['preset']}`"
        + "".join(f", `--set {o}`" for o in study.get("overrides", []))
        + f". AdamW lr {recipe['lr']:g} (warmup {recipe['warmup_epochs']:g} epochs, cosine to "
        f"{recipe['min_lr']:g}{length}), weight decay {recipe['weight_decay']:g}, batch {batch}, "
        f"{img}x{img} input, augmentation `{aug['pipeline']}`"
        f"{' (four-pass epoch)' if aug['four_pass'] else ''}, label smoothing "
        f"{aug['label_smoothing']:g}, seed {recipe['seed']}. {trained}. Nothing was tuned per "
        "model.",
        "",
        "Sizes: "
        + ", ".join(
            f"`{m.name}` {m.params / 1e6:.2f} M parameters, {m.gflops_forward:.3f} GFLOPs per image"
            for m in results.models
        )
        + " (comparable in parameters; FLOPs differ).",
        "",
        "## Results",
        "",
        _md_table(TABLE_HEADERS, table_rows(results)),
        "",
        f"Clean train top-1: the final weights on the unaugmented train split "
        f"({maxvit.clean_train['n']:,} images); val: the last epoch's evaluation "
        f"({study['data']['val']:,} images). Train s/batch (bench): median training step of "
        f"`maxvit bench model` over {results.bench['config']['rounds']} rounds at batch {batch}; "
        f"s/batch in run: median over epochs of the training loop's own throughput "
        f"(data loading included). Chance is {chance:.2f}%: `{maxvit.name}` reaches "
        f"{maxvit.last['val_top1']:.2f}% val top-1, {maxvit.last['val_top1'] - chance:.2f} points "
        f"above chance ({maxvit.last['val_top1'] / chance:.1f}x).",
        "",
        "## Recorded results beside ours",
        "",
        "| | recorded: " + RECORDED["scale"] + f" | ours: {scale} |",
        "|---|---|---|",
        f"| MaxViT train accuracy (augmented stream, last epoch) | {RECORDED['train_acc']:.2f}% "
        f"| {maxvit.last['train_acc']:.2f}% |",
        f"| MaxViT val top-1 | {RECORDED['val_top1']:.2f}% | {maxvit.last['val_top1']:.2f}% |",
        f"| MaxViT gap, augmented stream - val | {RECORDED['gap']:.2f} | "
        f"{maxvit.gap_augmented:.2f} |",
        f"| MaxViT gap, clean train - val | - | {maxvit.gap:.2f} |",
        f"| CoAtNet gap | {RECORDED['coatnet_gap']:.2f} | {coatnet.gap_augmented:.2f} (augmented), "
        f"{coatnet.gap:.2f} (clean) |",
        f"| MaxViT train loss, first -> last epoch | {RECORDED['train_loss'][0]:.2f} -> "
        f"{RECORDED['train_loss'][1]:.2f} | {maxvit.rows[0]['train_loss']:.2f} -> "
        f"{maxvit.last['train_loss']:.2f} |",
        f"| MaxViT s/batch | {RECORDED['maxvit_s_per_batch']:.2f} (batch "
        f"{RECORDED['batch_size']}) | {maxvit.s_per_batch:.3f} (batch {batch}) |",
        *_vit_rows(maxvit, vit),
        "",
        *_fit_lines(results),
        *_matched_lines(maxvit, coatnet, study["data"]["val"]),
        "## Curves",
        "",
        f"![loss and accuracy curves of the {count.lower()} models](curves.png)",
        "",
        "## The recorded claims at this scale",
        "",
    ]
    for i, claim in enumerate(claims, 1):
        lines += [f"{i}. *{claim.title}* **{claim.verdict.capitalize()}** at this scale. "
                  f"{claim.text}", ""]  # fmt: skip
    lines += [
        "The discussion's third point (train on ImageNet-1K to reduce overfitting) is a proposal, "
        "not a measurement; it is not tested here.",
        "",
        "## Run",
        "",
        f"Wall time {wall / 60:.1f} min: "
        + ", ".join(f"{name} {p['wall_s'] / 60:.1f}" for name, p in phases.items())
        + f" min. Started {study['started']}, finished {study.get('finished', '(unfinished)')}.",
        f"CPU time of the study's process and its data workers: {cpu / 60:.1f} min for "
        f"{env['threads']} threads. Load average (1 min) at start / end: {_fmt_load(load[0])} / "
        f"{_fmt_load(load[1])} on {env['cpu_count']} cores; a load above the core count means "
        "other jobs shared the machine, which inflates the wall time, the CPU time (threads "
        "waiting for a core spin) and the speed measurements above.",
        "",
        "Files (every number above comes from them; `maxvit repro --report-only --out DIR` "
        "rebuilds this report): `study.json`, `runs/<model>/metrics.jsonl` and `config.yaml`, "
        "`runs/<model>/clean_train.json`, `bench/model.json`"
        + (
            ", `bench/scaling/scaling.json` (plot: `bench/scaling/scaling.png`)."
            if vit is not None
            else "."
        ),
        "",
    ]
    return "\n".join(lines)


def _vit_rows(maxvit: ModelResult, vit: ModelResult | None) -> list[str]:
    if vit is None:
        return []
    return [
        f"| ViT (12 blocks) s/batch | {RECORDED['vit_s_per_batch']:.2f} | {vit.s_per_batch:.3f} |",
        f"| ViT / MaxViT time per batch | "
        f"{RECORDED['vit_s_per_batch'] / RECORDED['maxvit_s_per_batch']:.2f}x | "
        f"{vit.s_per_batch / maxvit.s_per_batch:.2f}x |",
    ]


def _fit_lines(results: StudyResults) -> list[str]:
    """Whether each model reached the plan's fit (clean train top-1), for plans that set one."""
    fit = results.study.get("plan", {}).get("fit")
    if fit is None:
        return []
    parts = [
        f"{m.role} ({m.name}) {'reached it' if m.fit_top1 >= fit else 'did not'}: "
        f"{m.fit_top1:.2f}%"
        + (
            f" of its last epoch's {m.last['clean_train_images']:,} fixed train images (whole "
            f"train split {m.clean_train['top1']:.2f}%)"
            if "clean_train_top1" in m.last
            else ""
        )
        for m in results.models
    ]
    return [
        f"**Fit (clean train top-1 >= {fit:g}% for every model):** " + "; ".join(parts) + ".",
        "",
    ]


def _matched_lines(maxvit: ModelResult, coatnet: ModelResult, n_val: int) -> list[str]:
    """The gaps at matched clean-train accuracy, for runs that logged a fit curve."""
    if not fit_curve(maxvit.rows) or not fit_curve(coatnet.rows):
        return []
    n_fit = maxvit.rows[-1].get("clean_train_images", 0)
    rows = [
        [f"{m.level:.2f}%", f"{m.val:.2f}%", f"{m.gap:.2f} +- {m.se:.2f}", f"{c.val:.2f}%",
         f"{c.gap:.2f} +- {c.se:.2f}", f"{c.gap - m.gap:.2f} +- {math.hypot(m.se, c.se):.2f}"]
        for m, c in matched_fit(maxvit, coatnet, n_val)
    ]  # fmt: skip
    headers = ["clean-train top-1", "MaxViT val", "MaxViT gap", "CoAtNet val", "CoAtNet gap",
               "CoAtNet - MaxViT"]  # fmt: skip
    return [
        "## Gaps at matched fit",
        "",
        f"Each epoch also measured clean-train top-1 on a fixed subset of {n_fit:,} train images "
        "(every k-th image, so every class). Both models' val top-1 is read at the same "
        "clean-train levels (linear between the epochs around the first time a model reaches a "
        "level): the highest level both reach, and three below it down to the lowest both "
        "cover. Standard errors are binomial (the subset and the val images).",
        "",
        _md_table(headers, rows) if rows else "The two curves share no clean-train level.",
        "",
        "![val against clean-train top-1 per epoch](fit.png)",
        "",
    ]


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _fmt_load(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def plot_study_curves(results: StudyResults, path: Path) -> None:
    """The plan's models' curves in one figure (`maxvit.plots`)."""
    runs = [Curves(f"{m.role} ({m.name})", m.rows, m.clean_train["top1"]) for m in results.models]
    plot_curves(runs, path, scale_label(results))

"""``python -m crossi2p_training.ablation``: the ablation table (GradNorm vs fixed weights, with and
without the fine stage, with and without the pose loss), trained and evaluated the same way.

Every variant is the same training config (default ``cpu``) with one switch flipped by a config
override, trained from scratch for the same ``--steps`` with the same seed and data, then
evaluated with ``crossi2p-evaluate`` on the same held-out simulated drives under the same
protocol. Variants (overrides of the config, nothing else changes)::

    full          GradNorm, fine stage, pose loss (the shipped recipe)
    fixed_weights loss.gradnorm=false        (alignment/correspondence/pose weights stay 1, 1, 1)
    no_fine       ablation.fine_stage=false  (coarse-only model: superpoint centre <-> superpixel centre)
    no_pose       ablation.pose_loss=false   (matching losses only; the PnP still runs at test time)

Writes ``<out>/<variant>/`` (the training run and its evaluation), ``<out>/ablation.json``,
``<out>/ablation.md`` (the table, with the exact commands) and ``<out>/ablation.png``.
Runs that already have their evaluation JSON are reused (re-run after a stop continues).

Example (what docs/benchmarks.md reports)::

    python -m crossi2p_training.ablation --steps 250 --set optim.warmup_steps=50 --out runs/ablation
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from crossi2p.cli import ArgumentParser

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "fixed_weights": ["loss.gradnorm=false"],
    "no_fine": ["ablation.fine_stage=false"],
    "no_pose": ["ablation.pose_loss=false"],
}
COLUMNS = ("acc", "rre_euler_sum_deg_median", "rre_geodesic_deg_median", "rte_m_median", "rte_m_mean")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m crossi2p_training.ablation", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n    python -m crossi2p_training.ablation --steps 250 "
                              "--set optim.warmup_steps=50 --out runs/ablation")
    p.add_argument("--config", default="cpu", help="training config (name in training/configs or a YAML path)")
    p.add_argument("--steps", type=int, required=True, help="training steps of every variant")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override applied to every variant (repeatable)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--eval-seed", type=int, default=900001, help="first held-out simulator drive seed")
    p.add_argument("--eval-drives", type=int, default=5)
    p.add_argument("--eval-frames", type=int, default=10, help="frames per evaluation drive")
    p.add_argument("--protocol", choices=("global", "refine"), default="global")
    return p


def _run(cmd: list[str], log: Path) -> None:
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {rc}); see {log}")


def run_variant(name: str, args) -> dict:
    """Train and evaluate one variant; returns its evaluation summary plus the commands."""
    out = args.out / name
    eval_json = out / "eval.json"
    sets = [s for kv in args.set + VARIANTS[name] for s in ("--set", kv)]
    train_cmd = ["crossi2p-train", "--config", args.config, "--steps", str(args.steps), *sets, "--out", str(out)]
    eval_cmd = ["crossi2p-evaluate", "--model", str(out / "checkpoints" / "last.pt"), "--sim-seed", str(args.eval_seed),
                "--sim-drives", str(args.eval_drives), "--frames", str(args.eval_frames), "--protocol", args.protocol,
                "--seed", "0", "--json", str(eval_json), "--no-overlays", "--quiet"]
    if not eval_json.exists():
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        _run([sys.executable, "-m", "crossi2p_training.train", *train_cmd[1:], "--set", "log.progress=false"],
             out / "train.out")
        train_s = time.perf_counter() - t0
        _run([sys.executable, "-m", "crossi2p_training.evaluate", *eval_cmd[1:]], out / "eval.out")
        summary = json.loads(eval_json.read_text())
        summary["train_wall_s"] = train_s
        eval_json.write_text(json.dumps(summary, indent=2))
    summary = json.loads(eval_json.read_text())
    return {"variant": name, "overrides": VARIANTS[name], "train_command": shlex.join(train_cmd),
            "eval_command": shlex.join(eval_cmd), **{k: summary.get(k) for k in (*COLUMNS, "frames", "train_wall_s")}}


def markdown_table(rows: list[dict], args) -> str:
    lines = [f"Ablation: `{args.config}` config, {args.steps} steps each from scratch (same seed and data), "
             f"evaluated on {args.eval_drives} held-out simulated drives x {args.eval_frames} frames "
             f"(seeds {args.eval_seed}..{args.eval_seed + args.eval_drives - 1}), `{args.protocol}` protocol.",
             "", "| variant | overrides | Acc | RRE euler-sum median (deg) | RRE geodesic median (deg) | "
             "RTE median (m) | RTE mean (m) | train time (min) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {' '.join(r['overrides']) or '-'} | {100 * r['acc']:.1f} % | "
                     f"{r['rre_euler_sum_deg_median']:.2f} | {r['rre_geodesic_deg_median']:.2f} | "
                     f"{r['rte_m_median']:.2f} | {r['rte_m_mean']:.2f} | {r['train_wall_s'] / 60:.1f} |")
    lines += ["", "Commands:", ""] + [f"- {r['variant']}: `{r['train_command']}` then `{r['eval_command']}`" for r in rows]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, key, label in zip(axes, ("acc", "rre_geodesic_deg_median", "rte_m_median"),
                              ("Acc (RTE < 2 m, RRE < 5 deg)", "median RRE geodesic (deg)", "median RTE (m)")):
        ax.bar(names, [r[key] for r in rows], color="tab:blue")
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        from tqdm import tqdm

        for name in tqdm(args.variants, desc="ablation variants", unit="run"):
            rows.append(run_variant(name, args))
    except (RuntimeError, OSError, json.JSONDecodeError) as exc:
        print(f"ablation: error: {exc}", file=sys.stderr)
        return 1
    (args.out / "ablation.json").write_text(json.dumps(rows, indent=2))
    table = markdown_table(rows, args)
    (args.out / "ablation.md").write_text(table)
    plot(rows, args.out / "ablation.png")
    print(table)
    print(f"ablation: wrote {args.out / 'ablation.md'}, {args.out / 'ablation.json'}, {args.out / 'ablation.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

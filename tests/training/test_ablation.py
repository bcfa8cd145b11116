"""The ablation driver trains each variant with its switch flipped and tabulates one evaluation."""
from __future__ import annotations

import json

import torch

from crossi2p_training.ablation import main


def test_two_variants_train_evaluate_and_tabulate(tmp_path, tiny_overrides):
    out = tmp_path / "ablation"
    args = ["--config", "tiny", "--steps", "1", "--variants", "full", "no_fine", "--eval-drives", "1",
            "--eval-frames", "1", "--out", str(out), "--set", f"data.cache_dir={tiny_overrides['data.cache_dir']}",
            "--set", "log.tensorboard=false"]
    assert main(args) == 0
    rows = json.loads((out / "ablation.json").read_text())
    assert [r["variant"] for r in rows] == ["full", "no_fine"]
    assert all(r["frames"] == 1 and 0.0 <= r["acc"] <= 1.0 for r in rows)
    # the switch reached the model that was trained (coarse-only for no_fine)
    fine = [torch.load(out / v / "checkpoints" / "last.pt", weights_only=True)["model_config"]["fine"]["enabled"]
            for v in ("full", "no_fine")]
    assert fine == [True, False]
    table = (out / "ablation.md").read_text()
    assert "| no_fine | ablation.fine_stage=false |" in table and (out / "ablation.png").stat().st_size > 0
    # a second call reuses the finished runs (no retraining: the evaluation JSON is kept)
    stamp = (out / "full" / "eval.json").stat().st_mtime_ns
    assert main(args) == 0 and (out / "full" / "eval.json").stat().st_mtime_ns == stamp

"""The real training loop runs on CPU on the tiny config: steps, logs, checkpoints that load with
``torch.load(weights_only=True)``, and a resume that continues exactly where it stopped."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from crossi2p_training.config import CONFIG_DIR, load_train_config, parse_overrides
from crossi2p_training.train import lr_at, main


def _args(out, overrides, *extra):
    args = ["--config", "tiny", "--out", str(out), *extra]
    for k, v in overrides.items():
        args += ["--set", f"{k}={v}"]
    return args


def test_two_steps_then_resume_continues_like_an_uninterrupted_run(tmp_path, tiny_overrides):
    out = tmp_path / "run"
    assert main(_args(out, tiny_overrides, "--steps", "2")) == 0
    for name in ("config.yaml", "train_log.csv", "val_log.csv", "summary.json", "checkpoints/last.pt"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    ckpt = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["config"]["name"] == "tiny"
    assert {"state_dict", "optimizer", "loss", "model_config", "format"} <= set(ckpt)
    assert ckpt["loss"]["gradnorm"]["weights"].shape == (3,)
    first_seconds = ckpt["train_seconds"]
    assert first_seconds > 0

    # resume to step 4 ...
    assert main(_args(out, tiny_overrides, "--steps", "4", "--resume", str(out / "checkpoints" / "last.pt"))) == 0
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for key in ("loss/total", "loss/cross_modal", "loss/pose", "gradnorm/w_alignment", "lr", "pose/rte_m"):
        assert key in rows[0], key
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["val"]["frames"] == 2
    resumed = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    # the training time of a resumed run counts from step 0
    assert summary["wall_time_total_s"] == pytest.approx(first_seconds + summary["wall_time_s"])
    assert resumed["train_seconds"] > first_seconds
    # ... and not to a step it has passed: one line, the run's summary left as it was
    before = (out / "summary.json").read_text()
    assert main(_args(out, tiny_overrides, "--steps", "3", "--resume", str(out / "checkpoints" / "last.pt"))) == 1
    assert (out / "summary.json").read_text() == before

    # ... equals 4 steps in one go (same data order, augmentations, loss sampling, GradNorm state)
    straight = tmp_path / "straight"
    assert main(_args(straight, tiny_overrides, "--steps", "4")) == 0
    ref = torch.load(straight / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    for name, t in ref["state_dict"].items():
        assert torch.allclose(t.float(), resumed["state_dict"][name].float(), atol=1e-6), name
    assert torch.allclose(ref["loss"]["gradnorm"]["weights"], resumed["loss"]["gradnorm"]["weights"], atol=1e-6)


def test_ablation_switches_drop_the_pose_group(tmp_path, tiny_overrides):
    out = tmp_path / "ablate"
    assert main(_args(out, tiny_overrides, "--steps", "1", "--set", "ablation.pose_loss=false",
                      "--set", "ablation.fine_stage=false", "--set", "log.tensorboard=false")) == 0
    row = next(csv.DictReader((out / "train_log.csv").open()))
    assert "gradnorm/w_pose" not in row and "gradnorm/w_correspondence" in row
    # the coarse-only model is what was trained, and its checkpoint says so
    ckpt = torch.load(sorted((out / "checkpoints").glob("*.pt"))[-1], map_location="cpu", weights_only=True)
    assert ckpt["model_config"]["fine"]["enabled"] is False


def test_help_lists_every_config_key(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for key in ("--resume", "--steps", "optim.lr", "loss.gradnorm_alpha", "ablation.pose_loss", "data.val_seed"):
        assert key in text, key
    # each key with its type and the default a config file that leaves it out gets
    from crossi2p_training.config import TrainConfig
    assert f"optim.lr (float, default {TrainConfig().optim.lr!r})" in text
    assert f"loss.gradnorm (bool, default {TrainConfig().loss.gradnorm!r})" in text


def test_unknown_config_key_is_an_error_naming_it(tmp_path, capsys):
    assert main(["--config", "tiny", "--out", str(tmp_path), "--set", "optim.learning_rate=1"]) == 2
    assert "learning_rate" in capsys.readouterr().err
    with pytest.raises(ValueError, match="overlap"):
        load_train_config("tiny", {"data.val_seed": 2})


def test_shipped_configs_load_and_paper_is_paper_sized():
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert {"cpu", "paper", "tiny"} <= set(names)
    for name in names:
        load_train_config(name)
    paper = load_train_config("paper")
    assert (paper.preprocess.image_height, paper.preprocess.image_width, paper.preprocess.num_points) == (160, 512, 40960)
    assert paper.model.dim == 256 and paper.data.source == "kitti"
    assert [p[-2:] for p in paper.data.train_paths] == [f"{i:02d}" for i in range(9)]
    assert [p[-2:] for p in paper.data.val_paths] == ["09", "10"]
    # its superpoints (32 members) span several 8-px superpixels: the centre's cell is the target
    assert paper.loss.coarse_target == "centre"
    cpu = load_train_config("cpu")
    assert 64 <= cpu.model.dim <= 128 and cpu.data.source == "sim_cache"


def test_overrides_parse_yaml_values():
    assert parse_overrides(["optim.lr=1e-4", "loss.gradnorm=false", "data.train_paths=[a, b]", "name=x"]) == {
        "optim.lr": 1e-4, "loss.gradnorm": False, "data.train_paths": ["a", "b"], "name": "x"}


def test_learning_rate_warms_up_then_decays(tiny_train_config):
    o = tiny_train_config.optim
    o = type(o)(**{**o.__dict__, "lr": 1.0, "warmup_steps": 10, "schedule": "cosine", "min_lr_ratio": 0.1})
    lrs = [lr_at(s, o, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_warm_restart_keeps_the_first_cycle_and_restarts_lower(tiny_train_config):
    o = tiny_train_config.optim
    base = type(o)(**{**o.__dict__, "lr": 1.0, "warmup_steps": 10, "schedule": "cosine", "min_lr_ratio": 0.1})
    sgdr = type(o)(**{**base.__dict__, "restart_steps": [100], "restart_decay": 0.3})
    # steps before the restart follow the schedule of the 100-step run exactly
    assert [lr_at(s, sgdr, 160) for s in range(100)] == pytest.approx([lr_at(s, base, 100) for s in range(100)])
    # the restart jumps to 0.3 * lr and anneals to the floor by the end
    after = [lr_at(s, sgdr, 160) for s in range(100, 160)]
    assert after[0] == pytest.approx(0.3) and after[-1] == pytest.approx(0.1, abs=0.01)
    assert all(a >= b for a, b in zip(after, after[1:]))


@pytest.mark.parametrize("extra, code, message", [
    (["--set", "optim.lr"], 2, "expected key=value"),
    (["--set", "optim.lr=abc"], 2, "--set optim.lr: expected a number, got 'abc'"),   # its source, not the YAML
    (["--set", "train.stepz=1"], 2, "--set train.stepz: unknown key 'train'"),           # not the config file's
    (["--set", "optim.lr.x=1"], 2, "--set optim.lr.x: optim.lr is not a section"),
    (["--set", "data.source=kitti", "--set", "data.root=NOSUCH", "--set", "data.train_paths=[\"00\"]",
      "--set", "data.val_paths=[\"01\"]"], 1, "not found or not a folder"),
    (["--resume", "NOSUCH.pt"], 1, "file not found"),
    (["--out", "A_FILE"], 1, "is a file, expected the run's folder"),
    (["--set", "model.dim=48", "--resume", "TINY"], 1, "does not match this configuration"),
    (["--set", "model.dim=48", "--set", "init_weights=TINY"], 1, "tensors fit this network"),
])
def test_bad_setup_input_is_one_line_not_a_traceback(tmp_path, tiny_checkpoint, tiny_overrides, capsys, extra, code,
                                                     message):
    """Set-up errors (data, checkpoints, output folder) are one line and exit 1 (2: the config),
    before any step; a checkpoint of another model configuration is refused, not half-loaded."""
    (tmp_path / "A_FILE").write_text("")
    extra = [e.replace("NOSUCH", str(tmp_path / "nosuch")).replace("A_FILE", str(tmp_path / "A_FILE"))
             .replace("TINY", str(tiny_checkpoint)) for e in extra]
    args = ["--config", "tiny", "--out", str(tmp_path / "run"), "--steps", "1"]
    for k, v in tiny_overrides.items():
        args += ["--set", f"{k}={v}"]
    assert main(args + extra) == code
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("crossi2p-train: error:") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_kitti_source_without_calibration_is_one_line_before_any_step(tmp_path, tiny_overrides, shared_data,
                                                                          capsys):
    """Every frame of the training folder fails to read (no calib.txt): one error line at set-up,
    exit 1 (it was a traceback from inside the DataLoader)."""
    import shutil

    d = shared_data / "real" / "kitti_000000"
    for seq in ("00", "01"):
        folder = tmp_path / "sequences" / seq
        (folder / "image_2").mkdir(parents=True)
        (folder / "velodyne").mkdir()
        shutil.copy(d / "000000.png", folder / "image_2" / "000000.png")
        shutil.copy(d / "000000.bin", folder / "velodyne" / "000000.bin")
    shutil.copy(d / "000000.txt", tmp_path / "sequences" / "01" / "calib.txt")
    extra = ["--set", "data.source=kitti", "--set", f"data.root={tmp_path / 'sequences'}",
             "--set", 'data.train_paths=["00"]', "--set", 'data.val_paths=["01"]', "--set", "optim.batch_size=1"]
    assert main(_args(tmp_path / "run", tiny_overrides, "--steps", "1", *extra)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("crossi2p-train: error: no frame of") and "calib.txt: not found" in err[-1], err
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_second_run_into_a_folder_holding_one_is_refused_unless_overwrite(tmp_path, tiny_overrides, capsys):
    """A new run into a run's folder would mix the two (logs appended, the old run's periodic
    checkpoints kept by ``keep_last``): one line naming --resume and --overwrite, nothing touched;
    --overwrite starts the folder afresh."""
    out = tmp_path / "run"
    assert main(_args(out, tiny_overrides, "--steps", "1")) == 0
    before = (out / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(_args(out, tiny_overrides, "--steps", "2")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a run already" in err, err
    assert f"--resume {out / 'checkpoints' / 'last.pt'}" in err and "--overwrite" in err
    assert (out / "checkpoints" / "last.pt").read_bytes() == before
    assert main(_args(out, tiny_overrides, "--steps", "2", "--overwrite")) == 0
    assert [int(r["step"]) for r in csv.DictReader((out / "train_log.csv").open())] == [1, 2]
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*.pt")) == ["step_0000001.pt", "step_0000002.pt"]


def test_resume_drops_the_log_rows_an_interrupted_run_wrote_past_its_checkpoint(tmp_path):
    from crossi2p_training.train import CsvLog

    log = CsvLog(tmp_path / "train_log.csv")
    for step in (1, 2, 3, 4):
        log.write({"step": step, "loss": 0.5})
    assert CsvLog(tmp_path / "train_log.csv").drop_after(2) == 2
    reopened = CsvLog(tmp_path / "train_log.csv")
    reopened.write({"step": 3, "loss": 0.4})
    assert [(r["step"], r["loss"]) for r in csv.DictReader((tmp_path / "train_log.csv").open())] == \
        [("1", "0.5"), ("2", "0.5"), ("3", "0.4")]


@pytest.mark.parametrize("sig, code, name", [("SIGINT", 130, "Ctrl-C"), ("SIGTERM", 143, "SIGTERM")])
def test_a_signal_ends_the_step_saves_it_and_resume_without_out_continues_the_same_run(tmp_path, tiny_overrides,
                                                                                      sig, code, name):
    """Ctrl-C or SIGTERM during training: the step under way finishes and is saved (last.pt at that
    step), the summary says it stopped, exit 130 / 143 with one line (it was a traceback and every
    step since the last periodic checkpoint lost). ``--resume`` without ``--out`` continues in the
    checkpoint's own run folder."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    args = _args(out, tiny_overrides, "--steps", "400", "--set", "checkpoint.every_steps=1000")
    proc = subprocess.Popen([sys.executable, "-m", "crossi2p_training.train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = out / "train_log.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.is_file() and len(log.read_text().splitlines()) >= 3):
        time.sleep(0.1)                                 # two steps logged: inside the loop
    proc.send_signal(getattr(signal, sig))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"crossi2p-train: stopped by {name} after step ") and "Traceback" not in stderr, stderr
    step = int(line.split("after step ")[1].split(";")[0])
    assert 2 <= step < 400
    assert torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["step"] == step
    assert json.loads((out / "summary.json").read_text())["interrupted"] == name
    # resume from anywhere, without --out: into the same run, its log continuing without repeats
    other = tmp_path / "elsewhere"
    other.mkdir()
    resume = [sys.executable, "-m", "crossi2p_training.train", "--config", str(out / "config.yaml"), "--resume",
              str(out / "checkpoints" / "last.pt"), "--steps", str(step + 2)]
    done = subprocess.run(resume, cwd=other, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming into {out}" in done.stdout and not (other / "runs").exists()
    steps = [int(r["step"]) for r in csv.DictReader(log.open())]
    assert steps == sorted(set(steps)) and steps[-1] == step + 2


def test_ctrl_c_before_the_first_step_is_one_line(tmp_path, monkeypatch, capsys, tiny_overrides):
    """Ctrl-C while the data is set up (simulating a cache can take minutes): one line, exit 130."""
    import crossi2p_training.train as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "build_sources", interrupted)
    assert main(_args(tmp_path / "run", tiny_overrides, "--steps", "1")) == 130
    err = capsys.readouterr().err.strip()
    assert err == ("crossi2p-train: interrupted (Ctrl-C) before the first step: no checkpoint (frames already "
                   "simulated into the cache are kept)")

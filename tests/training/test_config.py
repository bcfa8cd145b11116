"""crossi2p_training.config: --set values and YAML keys of the keys that hold strings."""
from __future__ import annotations

import pytest

from crossi2p_training.config import load_train_config, parse_overrides


def test_set_keeps_the_text_of_keys_that_hold_strings():
    """``data.train_paths=[00, 08]`` names KITTI sequences 00 and 08; plain YAML would read 00 as
    the number 0 (and fail as 'expected a string, got 0'). Other keys still parse numbers."""
    assert parse_overrides(["data.train_paths=[00, 08]", "data.val_paths=['09', 10]", "name=007",
                            "optim.lr=1e-4", "optim.step_milestones=[100, 200]", "loss.gradnorm=false"]) == {
        "data.train_paths": ["00", "08"], "data.val_paths": ["09", "10"], "name": "007",
        "optim.lr": 1e-4, "optim.step_milestones": [100, 200], "loss.gradnorm": False}
    cfg = load_train_config("cpu", parse_overrides(["data.source=kitti", "data.train_paths=[00, 01]",
                                                    "data.val_paths=[09]"]))
    assert cfg.data.train_paths == ["00", "01"] and cfg.data.val_paths == ["09"]


def test_set_single_value_for_a_list_key_shows_the_list_form():
    with pytest.raises(ValueError, match=r"^--set data.train_paths=00: expected a list, e\.g\. "
                                         r"data.train_paths=\[00\]$"):
        parse_overrides(["data.train_paths=00"])


def test_train_cli_single_value_for_a_list_key_is_one_line_exit_2(tmp_path, capsys):
    from crossi2p_training.train import main

    assert main(["--config", "tiny", "--out", str(tmp_path / "run"), "--set", "data.train_paths=00"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "crossi2p-train: error: --set data.train_paths=00: expected a list, e.g. data.train_paths=[00]"
    assert not (tmp_path / "run").exists()


def test_yaml_number_for_a_string_key_says_to_quote_it(tmp_path):
    path = tmp_path / "kitti.yaml"
    path.write_text("data:\n  source: kitti\n  train_paths: [00, '01']\n  val_paths: ['09']\n")
    with pytest.raises(ValueError, match=rf"^config {path}, key data.train_paths: expected a string, got the "
                                         r"number 0 \(quote it in YAML: unquoted, 00 or 10 is read as a number\)$"):
        load_train_config(path)


def test_train_cli_bad_steps_or_broken_config_yaml_is_one_line_exit_2(tmp_path, capsys):
    """The flag is named; a config that is not valid YAML is located (line, column)."""
    from crossi2p_training.train import main

    assert main(["--config", "tiny", "--out", str(tmp_path / "run"), "--steps", "-5"]) == 2
    assert capsys.readouterr().err.strip() == "crossi2p-train: error: --steps: expected > 0 steps, got -5"
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim: {steps: [1, 2\nmodel:\n  a: 1\n")
    assert main(["--config", str(broken), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"crossi2p-train: error: config {broken}: not valid YAML (") and "line 2" in err, err
    assert not (tmp_path / "run").exists()

"""crossi2p-export writes one checked ONNX graph + card that the core runtime loads, and the runtime
refuses graphs that do not match their card."""
import numpy as np
import onnx
import pytest
import yaml

from crossi2p.model_card import GRAPH_INPUTS, GRAPH_OUTPUTS, ModelCard
from crossi2p.runtime import CalibrationRuntime, ModelLoadError, RuntimeConfig
from crossi2p_training.export import main as export_main
from crossi2p_training.sim import SimConfig, simulate_sample


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    # --fine-peak-radius: the inference setting the shipped model uses (argmax + gather in the graph)
    assert export_main(["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--fine-peak-radius", "1"]) == 0
    return out


def test_export_writes_a_valid_opset17_graph_with_the_runtime_interface(exported):
    model = onnx.load(str(exported))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == list(GRAPH_INPUTS)
    assert [o.name for o in model.graph.output] == list(GRAPH_OUTPUTS)
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    card = ModelCard.load(exported.with_suffix(".yaml"))
    parity = card.training["parity_torch_vs_onnxruntime"]
    assert parity["rotation_rad"] < 1e-3 and parity["translation_m"] < 1e-3 and parity["corr_uv_px_max"] < 0.05
    assert parity["frames"] and 0 <= parity["pose_frames"] <= len(parity["frames"])
    assert card.preprocess["num_points"] > 0
    assert card.training["model_config"]["fine"]["peak_radius"] == 1   # recorded as the graph runs it
    # the command that trained it, as the checkpoint recorded it (no --training-command given)
    assert card.training["command"].startswith("crossi2p-train --config tiny --out ")


def test_runtime_runs_the_exported_graph_on_a_simulated_frame(exported):
    runtime = CalibrationRuntime(exported.with_suffix(".yaml"), RuntimeConfig(execution_provider="cpu",
                                                                                min_correspondences=0,
                                                                                min_confidence=0.0))
    sample = simulate_sample(SimConfig.preset("small"), seed=3)
    est = runtime.estimate(sample.image, sample.points, sample.camera)
    assert est.T_cam_lidar is not None and est.T_cam_lidar.shape == (4, 4)
    assert np.allclose(est.T_cam_lidar[:3, :3] @ est.T_cam_lidar[:3, :3].T, np.eye(3), atol=1e-6)
    assert set(est.latency_ms) == {"preprocess", "graph", "post"}
    assert est.corr_uv.shape[1] == 2 and len(est.corr_uv) == len(est.corr_weight)
    # The same frame gives the same estimate (fixed subsampling seed).
    again = runtime.estimate(sample.image, sample.points, sample.camera)
    assert np.allclose(again.T_cam_lidar, est.T_cam_lidar)


def test_bad_frames_give_an_invalid_result_not_an_exception(exported):
    runtime = CalibrationRuntime(exported.with_suffix(".yaml"), RuntimeConfig(execution_provider="cpu"))
    sample = simulate_sample(SimConfig.preset("small"), seed=4)
    empty = runtime.estimate(sample.image, np.zeros((0, 4), np.float32), sample.camera)
    assert not empty.valid and "points" in empty.reason
    nan = runtime.estimate(sample.image, np.full((5000, 4), np.nan, np.float32), sample.camera)
    assert not nan.valid and "finite points" in nan.reason
    wrong = runtime.estimate(sample.image[:50], sample.points, sample.camera)
    assert not wrong.valid and "image" in wrong.reason


def test_runtime_refuses_a_graph_whose_hash_or_interface_does_not_match(exported, tmp_path):
    card = yaml.safe_load(exported.with_suffix(".yaml").read_text())
    onnx_copy = tmp_path / exported.name
    onnx_copy.write_bytes(exported.read_bytes())
    # Corrupted graph: the hash no longer matches.
    tampered = tmp_path / "tampered.yaml"
    tampered.write_text(yaml.safe_dump({**card, "onnx_sha256": "0" * 64}))
    with pytest.raises(ModelLoadError, match="sha256"):
        CalibrationRuntime(tampered)
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({**card, "onnx_file": "nope.onnx"}))
    with pytest.raises(ModelLoadError, match="not found"):
        CalibrationRuntime(missing)
    bad_inputs = tmp_path / "bad_inputs.yaml"
    bad_inputs.write_text(yaml.safe_dump({**card, "inputs": card["inputs"][:2]}))
    with pytest.raises(ModelLoadError, match="inputs"):
        CalibrationRuntime(bad_inputs)
    with pytest.raises(ModelLoadError, match="not found"):
        CalibrationRuntime(tmp_path / "no_card.yaml")
    # A preprocessing size the graph does not take: refused at load, not on every frame.
    resized = tmp_path / "resized.yaml"
    pre = card["preprocess"]
    resized.write_text(yaml.safe_dump({**card, "preprocess": {**pre, "image_width": pre["image_width"] + 16}}))
    with pytest.raises(ModelLoadError, match="preprocess makes .* but the graph takes"):
        CalibrationRuntime(resized)
    # A hash that YAML reads as a number; the graph itself given as the card.
    numeric = tmp_path / "numeric.yaml"
    numeric.write_text(yaml.safe_dump(card).replace(f"onnx_sha256: {card['onnx_sha256']}", "onnx_sha256: 0000"))
    with pytest.raises(ModelLoadError, match="onnx_sha256 must be a str"):
        CalibrationRuntime(numeric)
    # The graph given instead of its card: the card beside it is taken; without one, one line.
    with pytest.raises(ModelLoadError, match=f"no model card {onnx_copy.stem}.yaml beside it"):
        CalibrationRuntime(onnx_copy)
    runtime = CalibrationRuntime(exported)
    assert runtime.card.onnx_sha256 == card["onnx_sha256"]
    runtime.close()


@pytest.mark.parametrize("out, extra, message, code", [
    ("model.pt", [], "expected a .onnx path", 2),
    ("", [], "expected a .onnx path", 2),                                  # --out is a folder
    ("model.onnx", ["--evaluation", "nosuch.json"], "--evaluation nosuch.json: expected a crossi2p-evaluate", 1),
    ("model.onnx", ["--evaluation", "eval.json", "--evaluation-command", "a", "--evaluation-command", "b"],
     "one --evaluation-command per --evaluation", 2),
    ("model.onnx", ["--fine-peak-radius", "-1"], "--fine-peak-radius: expected >= 0 fine cells, got -1", 2),
])
def test_bad_output_or_evaluation_is_one_line_before_any_export(tiny_checkpoint, tmp_path, monkeypatch, capsys,
                                                                   out, extra, message, code):
    """Checked before the (slow) export: nothing is written, one line, exit 2 for a flag's value
    (usage), 1 for an input that cannot be read."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval.json").write_text("{}")
    assert export_main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / out), *extra]) == code
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("crossi2p-export: error:")
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.yaml"))

"""Model cards: the YAML beside every exported graph (``models/<name>.yaml``).

A card records what the runtime must reproduce exactly (the preprocessing contract and the
graph's input/output names, shapes and dtypes), where the model came from (training data and
config, the command) and how good it is (evaluation figures with the command that made them),
plus the sha256 of the ``.onnx`` so a swapped or corrupted file is refused.

Schema (``card_version: 1``)::

    card_version: 1
    name: crossi2p_cpu
    onnx_file: crossi2p_cpu.onnx          # relative to the card
    onnx_sha256: <hex>
    opset: 17
    preprocess: {...}                     # crossi2p.preprocess.PreprocessConfig.to_dict()
                                          # (lidar_intensity: intensity policy; absent = fixed)
    inputs:  [{name: image, shape: [1, 3, H, W], dtype: float32}, ...]
    outputs: [{name: T_cam_lidar, shape: [1, 4, 4], dtype: float32}, ...]
    training: {config: ..., data: ..., command: ..., steps: ..., wall_time_h: ...}
    evaluation: [{command: ..., protocol: global, data: ..., acc: ..., ...}]
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .calib_io import yaml_problem

CARD_VERSION = 1

# The graph's interface (issue: exported graph). Names are stable: the runtime, the exporter
# and the parity tests use these constants.
GRAPH_INPUTS = ("image", "points", "K", "T_prior", "prior_weight")
GRAPH_OUTPUTS = ("T_cam_lidar", "confidence", "inlier_ratio", "corr_points", "corr_uv", "corr_weight")


@dataclass
class TensorSpec:
    """One graph input or output."""

    name: str
    shape: list
    """Dimensions; a string marks a dynamic axis (e.g. ``num_points``)."""
    dtype: str = "float32"


@dataclass
class ModelCard:
    """Everything the runtime needs to know about an exported model, and its provenance."""

    name: str
    onnx_file: str
    onnx_sha256: str
    preprocess: dict
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    opset: int = 17
    training: dict = field(default_factory=dict)
    evaluation: list = field(default_factory=list)
    card_version: int = CARD_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        return {"card_version": d.pop("card_version"), **d}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> "ModelCard":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model card {path}: file not found")
        try:
            d = yaml.safe_load(path.read_text())
        except UnicodeDecodeError:
            hint = f" (its card is {path.with_suffix('.yaml')})" if path.suffix == ".onnx" else ""
            raise ValueError(f"model card {path}: not a text file; expected the model card YAML, as "
                             f"models/crossi2p_cpu.yaml{hint}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"model card {path}: not valid YAML ({yaml_problem(exc)}; expected a model card "
                             "YAML, as models/crossi2p_cpu.yaml)") from None
        if not isinstance(d, dict):
            raise ValueError(f"model card {path}: expected a mapping at the top level")
        missing = [k for k in ("name", "onnx_file", "onnx_sha256", "preprocess", "inputs", "outputs")
                   if k not in d]
        if missing:
            raise ValueError(f"model card {path}: missing keys {missing}")
        for key, kind in (("name", str), ("onnx_file", str), ("onnx_sha256", str), ("preprocess", dict),
                          ("inputs", list), ("outputs", list)):
            if not isinstance(d[key], kind):
                raise ValueError(f"model card {path}: {key} must be a {kind.__name__}, got "
                                 f"{type(d[key]).__name__} {d[key]!r:.40}" + (" (quote it)" if kind is str else ""))
        if d.get("card_version", CARD_VERSION) != CARD_VERSION:
            raise ValueError(f"model card {path}: card_version {d.get('card_version')} is not "
                             f"supported (expected {CARD_VERSION})")
        d["inputs"] = [TensorSpec(**t) for t in d["inputs"]]
        d["outputs"] = [TensorSpec(**t) for t in d["outputs"]]
        return cls(**d)


def resolve_model_card(path: str | Path) -> Path:
    """A model card path from a card or an .onnx beside its card (``<name>.onnx`` -> ``<name>.yaml``),
    so that every tool and the node take either.

    Raises:
        ValueError: ``path`` is a folder, or an .onnx that is missing or has no card beside it
            (the message names the path as given).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"model {path}: is a folder, expected a model card YAML or an .onnx beside its card")
    if path.suffix == ".onnx":
        card = path.with_suffix(".yaml")
        if not path.is_file():
            raise ValueError(f"model {path}: not found (expected an .onnx with its card {card.name} beside it)")
        if not card.is_file():
            raise ValueError(f"model {path}: no model card {card.name} beside it")
        return card
    return path


def sha256_of_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

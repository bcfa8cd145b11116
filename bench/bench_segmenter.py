"""The segment term's image segmenter: scikit-image's Felzenszwalb-Huttenlocher (the product's)
against OpenCV's implementation of the same algorithm (``cv2.ximgproc``, opencv-contrib), on
speed and on the rig refinement of a real scene (prints figures).

OpenCV's is about 4-5x faster, but its segments differ in detail, and the refinement's result
moves with them: this script measures both so that the choice rests on figures
(docs/benchmarks.md section 8, "Measured at stop 34"). opencv-contrib is not a project
dependency and replaces the ``cv2`` package when installed beside it, so install it into a
folder of its own and put that first on the path:

    .venv/bin/pip install --no-deps --target /tmp/cvc opencv-contrib-python-headless==5.0.0.93
    PYTHONPATH=/tmp/cvc .venv/bin/python bench/bench_segmenter.py ../shared/data/real/tri_dgp_scene_02 --segmenter opencv -- --trials 3 --set max_window_points=60000
    .venv/bin/python bench/bench_segmenter.py ../shared/data/real/tri_dgp_scene_02 --segmenter skimage -- --trials 3 --set max_window_points=60000

Arguments after ``--`` go to ``bench/bench_rig.py`` (same process: the segmenter is swapped in
``crossi2p.refinement`` before it runs).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def opencv_felzenszwalb(image: np.ndarray, scale: float = 1.0, sigma: float = 0.8, min_size: int = 20) -> np.ndarray:
    """(H, W) labels of the (H, W, 3) uint8 ``image`` by OpenCV's graph segmentation, with
    scikit-image's ``felzenszwalb`` signature (its ``scale`` on 0-1 colours is OpenCV's ``k`` on
    0-255 ones)."""
    seg = cv2.ximgproc.segmentation.createGraphSegmentation(sigma=sigma, k=float(scale), min_size=int(min_size))
    return seg.processImage(np.ascontiguousarray(image))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, rest = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("scene", type=Path, help="a real multi-camera scene folder (bench_rig.py's input)")
    p.add_argument("--segmenter", choices=("skimage", "opencv"), default="skimage")
    args = p.parse_args(ours)
    import crossi2p.refinement as refinement
    from crossi2p.datasets.sample_folder import find_sample_folders, load_sample_folder
    if args.segmenter == "opencv":
        if not hasattr(cv2, "ximgproc"):
            print("bench_segmenter: cv2.ximgproc not found: install opencv-contrib-python-headless into a "
                  "folder of its own and put it first on PYTHONPATH (see --help)", file=sys.stderr)
            return 1
        refinement.felzenszwalb = opencv_felzenszwalb
    # speed and segment count on the scene's images, at the refinement's working width
    times, counts = [], []
    for folder in find_sample_folders(args.scene)[:6]:
        rgb = load_sample_folder(folder).image
        scale = min(1.0, refinement.RefinementConfig().max_width_px / rgb.shape[1])
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        t = time.perf_counter()
        labels = refinement.felzenszwalb(rgb, scale=200.0, sigma=0.8, min_size=100)
        times.append(time.perf_counter() - t)
        counts.append(int(labels.max()) + 1)
    print(f"{args.segmenter}: {np.median(times):.3f} s per image (median of {len(times)}, {rgb.shape[1]} px wide), "
          f"{int(np.median(counts))} segments")
    import bench_rig
    return bench_rig.main([str(args.scene)] + rest)


if __name__ == "__main__":
    raise SystemExit(main())

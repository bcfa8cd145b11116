#!/usr/bin/env python3
"""The main job on real sensor data: ``crossi2p-calibrate`` on the committed TRI DGP recording.

    .venv/bin/python scripts/real_demo.py [--cameras camera_01,camera_05,...] [--out DIR]

First the rig: one ``crossi2p-calibrate`` run on the first camera's topics with every other camera
as ``--rig-camera``, from the committed ``rig_prior_camera_XX.yaml`` (the rig calibration with the
LiDAR's pose moved by the stated offset, 3 deg / 0.2 m, alike for every camera): one refinement of
the LiDAR's pose over all cameras' frames, and every camera's calibration written
(``<out>/rig/``), with each camera's error against /tf_static.

Then each camera alone: per camera of ``data/real/tri_dgp_scene_02`` (a rosbag2: 3 LiDAR sweeps, 6 cameras, ground truth
on /tf_static; scripts/make_real_fixture.py wrote it), this runs ``crossi2p-calibrate`` (its
``main()``, in this process) on that camera's topics from the committed prior
``prior_camera_XX.yaml`` (the rig calibration moved by a stated offset: 3 deg / 0.2 m), then
compares with the recording's own calibration (/tf_static, parent ``lidar`` -> child
``camera_XX_optical``):

- the prior's error (RTE m, geodesic RRE deg);
- what the refinement's search found (``T_searched`` in crossi2p-calibrate's ``--json``), whether
  the refinement accepted it or refused it (then with its reason);
- the calibration crossi2p-calibrate wrote, if it wrote one (exit 0), else that it wrote none
  (exit 3: it does not trust any result; that is the product's answer, not a demo failure).

Writes into ``--out`` (default ``out/demo_real``): ``rig/`` (the rig run's calib*.yaml when
written, calibrate.json, report/), ``<first camera>_rig_before_after.jpg`` (prior, rig
calibration, ground truth: the README's picture), per camera ``<camera>/`` (calib.yaml when
written, calibrate.json, report/ with crossi2p-calibrate's report.md and overlays),
``<camera>_before_after.jpg`` (the newest pair of the window, points projected with the prior,
the searched estimate and the ground truth, stacked, half size: the README's picture),
``errors.png`` (prior, searched alone, and the rig's per camera), ``summary.json`` (``rig``, ``runs``)
and ``report.md``.

Exit 0 when every camera ran (calibrated or refused); 1 on bad input (one line).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RECORDING = REPO / "data" / "real" / "tri_dgp_scene_02"
CAMERAS = ("camera_01", "camera_05", "camera_06", "camera_07", "camera_08", "camera_09")
LIDAR_FRAME = "lidar"
POINTS_TOPIC = "/lidar/points"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="real_demo.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--recording", type=Path, default=RECORDING,
                   help="folder with bag/ and prior_<camera>.yaml (default %(default)s)")
    p.add_argument("--cameras", default=",".join(CAMERAS),
                   help="comma-separated cameras to calibrate (default: all six)")
    p.add_argument("--out", type=Path, default=REPO / "out" / "demo_real", help="output folder (default %(default)s)")
    p.add_argument("--jobs", type=int, default=2,
                   help="crossi2p-calibrate runs at a time, one process each (default %(default)s; at most the cores)")
    return p


def _errors(T_est, T_gt) -> dict | None:
    from crossi2p.metrics import registration_error

    if T_est is None:
        return None
    e = registration_error(np.asarray(T_est), T_gt)
    return {"rte_m": e.rte_m, "rre_geodesic_deg": e.rre_geodesic_deg, "rre_euler_sum_deg": e.rre_euler_sum_deg}


def _calibrate(argv: list[str], what: str) -> str:
    """``crossi2p-calibrate argv`` in this process (its ``main()``); what it printed on stdout.
    Raises ValueError (its one-line reason) unless it exited 0 (calibrated) or 3 (refused)."""
    from crossi2p_ros.calibrate import main as calibrate_main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = calibrate_main(argv)
    if code not in (0, 3):
        raise ValueError(f"crossi2p-calibrate {what}: exit {code}: {stderr.getvalue().strip()}")
    return stdout.getvalue()


def calibrate_camera(recording: Path, camera: str, out: Path) -> dict:
    """Run crossi2p-calibrate on one camera's topics from its prior; its JSON plus what it printed
    (``console``: its stdout, the summary or the next step) and the errors
    (``prior_error``, ``searched_error``, ``calibration_error``: dicts of ``rte_m``,
    ``rre_geodesic_deg``, ``rre_euler_sum_deg``, or None) against the bag's /tf_static."""
    from crossi2p.datasets.rosbag2 import read_bag_ground_truth
    from crossi2p.prior import load_prior
    bag, prior_path = recording / "bag", recording / f"prior_{camera}.yaml"
    if not prior_path.is_file():
        raise ValueError(f"{prior_path}: not found (cameras with a prior: "
                         f"{sorted(p.stem[6:] for p in recording.glob('prior_*.yaml'))})")
    prior = load_prior(prior_path)
    T_gt = read_bag_ground_truth(bag, camera_frame=prior.camera_frame, lidar_frame=prior.lidar_frame)
    json_path = out / camera / "calibrate.json"
    argv = [str(bag), "--image-topic", f"/{camera}/image_raw", "--camera-info-topic", f"/{camera}/camera_info",
            "--points-topic", POINTS_TOPIC, "--prior", str(prior_path), "--out", str(out / camera / "calib.yaml"),
            "--report", str(out / camera / "report"), "--json", str(json_path)]   # not --quiet: its next step
    console = _calibrate(argv, camera)
    run = json.loads(json_path.read_text())
    ref = run["refinement"] or {}
    run.update(camera=camera, console=console, T_gt=T_gt.tolist(), prior_error=_errors(prior.T_cam_lidar, T_gt),
               searched_error=_errors(ref.get("T_searched"), T_gt), calibration_error=_errors(run["T_cam_lidar"], T_gt),
               prior_offset=_prior_offset(prior_path))
    return run


def calibrate_rig(recording: Path, cameras: list[str], out: Path) -> dict:
    """Run crossi2p-calibrate once for the rig: ``cameras[0]``'s topics and ``rig_prior``, every
    other camera as ``--rig-camera`` with its ``rig_prior``; its JSON plus, per camera
    (``cameras``: list of dicts), ``prior_error``, ``searched_error`` (the main search carried to
    each camera by the priors' rig) and ``calibration_error`` against the bag's /tf_static."""
    from crossi2p.datasets.rosbag2 import read_bag_ground_truth
    from crossi2p.geometry import invert_transform
    from crossi2p.prior import load_prior

    bag, rig_out = recording / "bag", out / "rig"
    priors = {}
    for camera in cameras:
        path = recording / f"rig_prior_{camera}.yaml"
        if not path.is_file():
            raise ValueError(f"{path}: not found (write it with scripts/make_real_fixture.py)")
        priors[camera] = (path, load_prior(path))
    main_cam = cameras[0]
    argv = [str(bag), "--image-topic", f"/{main_cam}/image_raw", "--camera-info-topic", f"/{main_cam}/camera_info",
            "--points-topic", POINTS_TOPIC, "--prior", str(priors[main_cam][0]), "--out", str(rig_out / "calib.yaml"),
            "--report", str(rig_out / "report"), "--json", str(rig_out / "calibrate.json"), "--quiet"]
    for camera in cameras[1:]:
        argv += ["--rig-camera", f"/{camera}/image_raw", f"/{camera}/camera_info", str(priors[camera][0])]
    _calibrate(argv, "(rig)")
    run = json.loads((rig_out / "calibrate.json").read_text())
    searched = (run["refinement"] or {}).get("T_searched")
    T_main_prior = priors[main_cam][1].T_cam_lidar
    written = {main_cam: run["T_cam_lidar"], **{m["camera_frame"].removesuffix("_optical"): m["T_cam_lidar"]
                                                 for m in run["rig"] or []}}
    per_camera = []
    for camera in cameras:
        prior = priors[camera][1]
        T_gt = read_bag_ground_truth(bag, camera_frame=prior.camera_frame, lidar_frame=prior.lidar_frame)
        T_cam_ref = prior.T_cam_lidar @ invert_transform(T_main_prior)      # the rig, as the priors give it
        per_camera.append({"camera": camera, "T_gt": T_gt.tolist(), "prior": prior.T_cam_lidar.tolist(),
                           "prior_error": _errors(prior.T_cam_lidar, T_gt),
                           "T_searched": None if searched is None else (T_cam_ref @ np.asarray(searched)).tolist(),
                           "searched_error": None if searched is None else _errors(T_cam_ref @ np.asarray(searched), T_gt),
                           "T_cam_lidar": written.get(camera), "calibration_error": _errors(written.get(camera), T_gt)})
    run.update(cameras=per_camera, prior_offset=_prior_offset(priors[main_cam][0]))
    return run


def _prior_offset(prior_path: Path) -> dict:
    from crossi2p.calib_io import load_calibration_yaml

    meta = load_calibration_yaml(prior_path).metadata
    return {k: meta[k] for k in ("offset_deg", "offset_m", "offset") if k in meta}


def write_before_after(recording: Path, run: dict, path: Path, panels: list | None = None) -> Path:
    """The newest pair of ``run``'s camera, points projected with the prior, the searched estimate
    and the ground truth (or ``panels``: ``(title, T_cam_lidar, error dict or None)``), stacked
    with captions and scaled to half size (JPEG)."""
    import cv2

    from crossi2p.datasets.rosbag2 import CameraInfoRecord, ImageRecord, read_bag_messages
    from crossi2p.overlay import draw_projected_points

    camera = run["camera"]
    image = points = model = None
    for rec in read_bag_messages(recording / "bag", f"/{camera}/image_raw", f"/{camera}/camera_info", POINTS_TOPIC):
        if isinstance(rec, ImageRecord):
            image = rec.image
        elif isinstance(rec, CameraInfoRecord):
            model = rec.camera
        else:
            points = rec.points
    ref = run["refinement"] or {}
    verdict = ("accepted" if ref.get("accepted") else "refused: " + ref.get("reason", "").split(":")[0]) if ref \
        else "did not run"
    panels = panels or [("prior", run["prior"]["T_cam_lidar"], run["prior_error"]),
                        (f"searched ({verdict})", ref.get("T_searched"), run["searched_error"]),
                        ("ground truth (/tf_static)", run["T_gt"], None)]
    rows = []
    for title, T, err in panels:
        if T is None:
            continue
        drawn = draw_projected_points(image, points, model, np.asarray(T), radius_px=2)
        drawn = cv2.resize(drawn, (drawn.shape[1] // 2, drawn.shape[0] // 2), interpolation=cv2.INTER_AREA)
        caption = f"{camera}: {title}" + ("" if err is None else
                                          f"  RTE {err['rte_m']:.3f} m, RRE {err['rre_geodesic_deg']:.2f} deg")
        bar = np.zeros((30, drawn.shape[1], 3), np.uint8)
        cv2.putText(bar, caption, (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        rows += [bar, drawn]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return path


def plot_errors(runs: list[dict], path: Path, rig: dict | None = None) -> Path:
    """Bar chart per camera: RTE and geodesic RRE of the prior, of the searched estimate (each
    camera alone) and, with ``rig``, of the rig's calibration (its search where it wrote none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["camera"] for r in runs]
    x = np.arange(len(runs))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, key, label in ((axes[0], "rte_m", "RTE [m]"), (axes[1], "rre_geodesic_deg", "RRE geodesic [deg]")):
        bars = [([r["prior_error"] for r in runs], "0.6", "prior (each camera alone)"),
                ([r["searched_error"] for r in runs], "C0", "each camera alone (searched)")]
        if rig is not None:
            by_cam = {c["camera"]: c for c in rig["cameras"]}
            rig_prior = rig["prior_offset"]
            rig_label = (f"rig, from its prior {rig_prior.get('offset_m')} m / {rig_prior.get('offset_deg')} deg "
                         + ("(written)" if rig["exit_code"] == 0 else "(searched, refused)"))
            bars.append(([(by_cam[r["camera"]]["calibration_error"] or by_cam[r["camera"]]["searched_error"])
                          if r["camera"] in by_cam else None for r in runs], "C2", rig_label))
        width = 0.8 / len(bars)
        for k, (errs, colour, name) in enumerate(bars):
            vals = [e[key] if e else np.nan for e in errs]
            ax.bar(x + (k - (len(bars) - 1) / 2) * width, vals, width, color=colour, label=name)
        for i, r in enumerate(runs):
            if r["exit_code"] == 0:
                ax.annotate("accepted", (x[i], 0), ha="center", va="bottom", fontsize=7, rotation=90)
        ax.set_xticks(x, names, fontsize=8)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()      # below the plots: it covers no bar
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle("TRI DGP scene_02, 3 sweeps: error against /tf_static")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(err: dict | None) -> str:
    return "-" if err is None else f"{err['rte_m']:.3f} m / {err['rre_geodesic_deg']:.2f} deg"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()]
    try:
        if not (args.recording / "bag").exists():
            raise ValueError(f"{args.recording / 'bag'}: not found (write it with scripts/make_real_fixture.py)")
        if not cameras:
            raise ValueError("--cameras: empty")
        # the runs are independent: one process per core (each result is the same as run alone)
        workers = max(1, min(args.jobs, os.cpu_count() or 1))
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            print(f"crossi2p-calibrate {args.recording.name}/bag, the rig: /{cameras[0]}/image_raw/compressed with "
                  f"{len(cameras) - 1} more camera(s) as --rig-camera, from rig_prior_<camera>.yaml ...", flush=True)
            rig_job = pool.submit(calibrate_rig, args.recording, cameras, args.out)
            jobs = []
            for camera in cameras:
                print(f"crossi2p-calibrate {args.recording.name}/bag, /{camera}/image_raw/compressed + {POINTS_TOPIC} "
                      f"from prior_{camera}.yaml ...", flush=True)
                jobs.append(pool.submit(calibrate_camera, args.recording, camera, args.out))
            print(f"({len(jobs) + 1} runs, {workers} at a time)", flush=True)
            rig, runs = rig_job.result(), [job.result() for job in jobs]
        first = runs[0]
        picture = write_before_after(args.recording, first, args.out / f"{first['camera']}_before_after.jpg")
        lead = rig["cameras"][0]
        rig_verdict = "accepted" if rig["exit_code"] == 0 else "searched, refused"
        rig_picture = write_before_after(
            args.recording, first, args.out / f"{first['camera']}_rig_before_after.jpg",
            [("rig prior (the LiDAR's pose off)", lead["prior"], lead["prior_error"]),
             (f"rig calibration ({rig_verdict})", lead["T_cam_lidar"] or lead["T_searched"],
              lead["calibration_error"] or lead["searched_error"]),
             ("ground truth (/tf_static)", lead["T_gt"], None)])
        plot = plot_errors(runs, args.out / "errors.png", rig)
    except (ValueError, OSError) as exc:
        print(f"real_demo.py: error: {exc}", file=sys.stderr)
        return 1

    roff = rig["prior_offset"]
    print(f"\nThe rig: {len(cameras)} cameras refined as one, from priors that agree on where the cameras sit and "
          f"share one error in where the LiDAR is ({roff.get('offset', '')}). Errors against the recording's own "
          f"calibration (/tf_static), RTE / geodesic RRE:\n")
    print(f"{'camera':<10} {'rig prior':>20} {'crossi2p-calibrate --rig-camera':<}")
    for c in rig["cameras"]:
        verdict = (f"calibrated: {_fmt(c['calibration_error'])}" if rig["exit_code"] == 0
                   else f"refused (exit 3), searched {_fmt(c['searched_error'])}")
        print(f"{c['camera']:<10} {_fmt(c['prior_error']):>20} {verdict}")
    if rig["exit_code"] != 0:
        print(f"The rig was refused: {rig['reason']}")
    else:
        print(f"Written: {args.out / 'rig'}/calib*.yaml (one per camera; the covariance in calib.yaml)")

    off = first["prior_offset"]
    print(f"\nEach camera alone. Prior: the recording's calibration moved by {off.get('offset_deg')} deg and {off.get('offset_m')} m "
          f"({off.get('offset', '')}).")
    print(f"Errors against the recording's own calibration (/tf_static), RTE / geodesic RRE, "
          f"{first['pairs']} camera/LiDAR pairs per camera:\n")
    print(f"{'camera':<10} {'prior':>20} {'searched':>20}  {'crossi2p-calibrate':<}")
    for r in runs:
        ref = r["refinement"] or {}
        verdict = (f"calibrated ({r['stage']}): {_fmt(r['calibration_error'])}" if r["exit_code"] == 0
                   else f"refused (exit 3): {ref.get('reason') or r['reason']}")
        print(f"{r['camera']:<10} {_fmt(r['prior_error']):>20} {_fmt(r['searched_error']):>20}  {verdict}")
    T = first["T_cam_lidar"] or (first["refinement"] or {}).get("T_searched")
    kind = "written" if first["T_cam_lidar"] else "searched, NOT written (refused)"
    print(f"\n{first['camera']} T_cam_lidar ({kind}):")
    print("\n".join("  " + " ".join(f"{v:+.5f}" for v in row) for row in T))
    for r in runs:  # the demo knows the truth; crossi2p-calibrate does not
        c, p = r["calibration_error"], r["prior_error"]
        if c is not None and (c["rte_m"] > p["rte_m"] or c["rre_geodesic_deg"] > p["rre_geodesic_deg"]):
            worse = [f"{name} {c[k]:.3f} > prior {p[k]:.3f}" for k, name in
                     (("rte_m", "RTE m"), ("rre_geodesic_deg", "RRE deg")) if c[k] > p[k]]
            print(f"\nNote: {r['camera']}'s written calibration is further from the truth than its prior "
                  f"({', '.join(worse)}): accepted by crossi2p-calibrate's checks, wrong all the same.")
    refused = [r["camera"] for r in runs if r["exit_code"] != 0]
    if refused:
        print(f"\ncrossi2p-calibrate refused {len(refused)} of {len(runs)} cameras ({', '.join(refused)}): it "
              "wrote no calibration for them, as designed when it cannot trust its result; the 'searched' column "
              "is what its refinement found, shown for the demo only. On your own rig, keep the calibration you "
              "had (here: the prior) for a refused camera, calibrate the rig as one (above), or run crossi2p-calibrate again on a longer "
              "recording with more motion and texture (the reason says what was missing).")
    print(f"\nReport: {args.out / 'report.md'} (the rig: rig/report/report.md; per camera: "
          f"<camera>/report/report.md, overlays before/after); pictures: {rig_picture}, {picture}; plot: {plot}")
    summary = {"recording": str(args.recording), "rig": rig, "runs": runs}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"# Real recording demo: {args.recording}", "",
             f"## The rig: {len(cameras)} cameras refined as one", "", f"Rig prior offset: {roff.get('offset', '')}.",
             "" if rig["exit_code"] == 0 else f"Refused: {rig['reason']}", "",
             "| camera | rig prior | crossi2p-calibrate --rig-camera |", "|---|---|---|",
             *[f"| {c['camera']} | {_fmt(c['prior_error'])} | "
               + (f"calibrated: {_fmt(c['calibration_error'])}" if rig["exit_code"] == 0
                  else f"refused; searched {_fmt(c['searched_error'])}") + " |" for c in rig["cameras"]],
             "", f"![rig before/after]({rig_picture.name})", "", "[rig/report/report.md](rig/report/report.md)", "",
             "## Each camera alone", "", f"Prior offset: {off.get('offset', '')}.", "",
             "Errors against the recording's own calibration (its /tf_static): RTE in metres / geodesic "
             "RRE in degrees. *searched*: the refinement's best pose, whether or not it passed its checks.", "",
             "| camera | prior | searched | crossi2p-calibrate |", "|---|---|---|---|"]
    for r in runs:
        ref = r["refinement"] or {}
        lines.append(f"| {r['camera']} | {_fmt(r['prior_error'])} | {_fmt(r['searched_error'])} | "
                     + (f"calibrated: {_fmt(r['calibration_error'])}" if r["exit_code"] == 0
                        else f"refused: {ref.get('reason') or r['reason']}") + " |")
    lines += ["", f"![before/after]({picture.name})", "", "![errors](errors.png)", "",
              *[f"- [{r['camera']}/report/report.md]({r['camera']}/report/report.md)" for r in runs], ""]
    (args.out / "report.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

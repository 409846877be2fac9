"""`python -m benchmarks.studies.large_images MODEL --out docs/bench/large`: predict on images larger than memory.

Synthetic scenes with known labels (sunet_deploy.data.mosaic) written as tiled BigTIFFs, each run by
`python -m runtimes.predict` in a child process:

1. the same scene (default 4000x6000) as a PNG (read whole, today's path) and as a tiled BigTIFF
   (read in parts): the masks must be pixel-identical, and so their mIoU against the labels;
2. three sizes (default 5000, 10000, 20000 on a side), each under a hard address-space limit
   (RLIMIT_AS, default 1 GiB, set in the child before exec; MALLOC_ARENA_MAX=2 so that glibc does not
   reserve 64 MiB of address space per thread) smaller than the largest scene's uncompressed RGB:
   peak RSS (the child's ru_maxrss), Mpx/s; the largest one's mIoU against its labels, and the same
   protocol on the same scene read whole (one PNG, the in-memory path, no limit): its mask pixel for
   pixel against the lazy one, its mIoU and its peak RSS;
3. the middle size killed (SIGKILL) once half of its stripes are done, then `--resume`: the mask's
   bytes against the uninterrupted run's, and the resume's time against the full run's.

Writes report.json and report.md to --out. Seconds and Mpx/s depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from runtimes.large import HUGE_FLAG, allow_huge_images
from sunet_deploy.bigimage import open_lazy, read_mask
from sunet_deploy.data.mosaic import SyntheticMosaic
from sunet_deploy.flags import add_flag
from sunet_deploy.lifetime import die_with_parent
from sunet_deploy.metrics import ConfusionMatrix
from sunet_deploy.pipeline.palettes import read_label_png

from ..harness.report import save_report


def predict(model: str, source: Path, out: Path, flags: list[str], limit: int | None = None) -> dict:
    """One predict run in a child: exit code, wall seconds, peak RSS (MiB), its summary."""
    parent = os.getpid()

    def child() -> None:
        die_with_parent(parent)
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "runtimes.predict", model, str(source), "-o", str(out), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, preexec_fn=child)  # fmt: skip
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    summary_path = out / "predict_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if proc.returncode != 0:
        print(output[-2000:], file=sys.stderr)
    return {"rc": proc.returncode, "seconds": round(seconds, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "summary": summary}  # fmt: skip


def miou(mask, mosaic: SyntheticMosaic, regions: list[tuple[int, int, int, int]] | None = None) -> float:
    """mIoU of a mask (sliceable) against the scene's labels, over `regions` (default: all), a tile at a time."""
    cm = ConfusionMatrix(mosaic.num_classes)
    t = mosaic.tile
    for r0, r1, c0, c1 in regions or [(0, mosaic.size[0], 0, mosaic.size[1])]:
        for a in range(r0, r1, t):
            for c in range(c0, c1, t):
                b, d = min(r1, a + t), min(c1, c + t)
                cm.update(np.asarray(mask[a:b, c:d]), mosaic.region(a, b, c, d)[1])
    return float(cm.scores().miou)


def lazy_mask(path: Path):
    import tifffile
    import zarr

    return zarr.open(tifffile.imread(path, aszarr=True), mode="r")


def scene_pair(model: str, work: Path, size: tuple[int, int], flags: list[str]) -> dict:
    mosaic = SyntheticMosaic(size, 512, distinct=16)
    image, _ = mosaic.region(0, size[0], 0, size[1])
    for kind in ("png", "tif"):
        (work / f"scene_{kind}").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(work / "scene_png" / "scene.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    mosaic.write_tiff(work / "scene_tif" / "scene.tif")
    png = predict(model, work / "scene_png" / "scene.png", work / "out_png", flags)
    tif = predict(model, work / "scene_tif" / "scene.tif", work / "out_tif", flags)
    a, b = read_label_png(work / "out_png" / "scene_mask.png"), read_mask(work / "out_tif" / "scene_mask.tif")
    return {"size": list(size), "png_run": {k: png[k] for k in ("rc", "seconds", "peak_rss_mib")},
            "tiff_run": {k: tif[k] for k in ("rc", "seconds", "peak_rss_mib")},
            "pixels_different": int((a != b).sum()), "identical": bool(np.array_equal(a, b)),
            "overview_beside_tiff_mask": (work / "out_tif" / "scene_overview.png").exists(),
            "miou_png": miou(a, mosaic), "miou_tiff": miou(b, mosaic)}  # fmt: skip


def sizes_run(model: str, work: Path, sides: list[int], flags: list[str], limit: int) -> list[dict]:
    rows = []
    for side in sides:
        mosaic = SyntheticMosaic((side, side), 512, distinct=16)
        source = work / f"s{side}" / f"s{side}.tif"
        source.parent.mkdir(parents=True, exist_ok=True)
        if not source.exists():
            mosaic.write_tiff(source)
        run = predict(model, source, work / f"out_s{side}", flags, limit)
        (large,) = run["summary"].get("large_images") or [{}]
        row = {"side": side, "uncompressed_mib": round(side * side * 3 / 2**20, 1),
               "file_mib": round(source.stat().st_size / 2**20, 1), "limit_mib": limit // 2**20, "rc": run["rc"],
               "seconds": run["seconds"], "peak_rss_mib": run["peak_rss_mib"], "mpx_per_s": large.get("mpx_per_s")}  # fmt: skip
        if side == max(sides) and run["rc"] == 0:
            mask = lazy_mask(work / f"out_s{side}" / f"s{side}_mask.tif")
            row["miou"] = miou(mask, mosaic)
            row["in_memory"] = whole_check(model, work, mosaic, mask, flags)
        rows.append(row)
        print(row, flush=True)
    return rows


def whole_check(model: str, work: Path, mosaic: SyntheticMosaic, mask, flags: list[str]) -> dict:
    """The same protocol on the same scene read whole (one PNG, --allow-huge-images, no memory limit):
    its mask against the lazy run's, pixel for pixel, its mIoU, and its peak RSS beside the lazy one's."""
    side = mosaic.size[0]
    folder = work / f"s{side}_png"
    folder.mkdir(exist_ok=True)
    source = folder / f"s{side}.png"
    if not source.exists():
        cv2.imwrite(str(source), cv2.cvtColor(mosaic.region(0, side, 0, mosaic.size[1])[0], cv2.COLOR_RGB2BGR))
    run = predict(model, source, work / f"out_s{side}_png", [*flags, HUGE_FLAG])
    allow_huge_images()  # the mask PNG is as large as the scene
    whole = read_label_png(work / f"out_s{side}_png" / f"s{side}_mask.png")
    different = sum(int((whole[a : a + 2048] != np.asarray(mask[a : a + 2048])).sum()) for a in range(0, side, 2048))
    return {"rc": run["rc"], "seconds": run["seconds"], "peak_rss_mib": run["peak_rss_mib"],
            "miou_in_memory": miou(whole, mosaic), "pixels_different": different}  # fmt: skip


def resume_run(model: str, work: Path, side: int, flags: list[str], full_seconds: float) -> dict:
    source = work / f"s{side}" / f"s{side}.tif"
    out = work / f"out_s{side}_killed"
    width = open_lazy(source).shape[1]
    done_dir = out / f"s{side}_mask.partial.zarr" / "stripes_done"
    parent = os.getpid()
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "runtimes.predict", model, str(source), "-o", str(out), *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            preexec_fn=lambda: die_with_parent(parent))  # fmt: skip
    stripes = None
    while proc.poll() is None:
        if done_dir.exists():
            stripes = stripes or len(list(range(0, width, _stripe(out, side))))
            if len(list(done_dir.iterdir())) * 2 >= stripes:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.05)
    proc.wait()
    killed_after = time.perf_counter() - start
    finished_before_kill = len(list(done_dir.iterdir())) if done_dir.exists() else None
    resumed = predict(model, source, out, [*flags, "--resume"])
    (large,) = resumed["summary"]["large_images"]
    same = (out / f"s{side}_mask.tif").read_bytes() == (work / f"out_s{side}" / f"s{side}_mask.tif").read_bytes()
    return {"side": side, "killed_after_s": round(killed_after, 2), "stripes": large["stripes"],
            "stripes_done_at_kill": finished_before_kill, "stripes_resumed": large["stripes_resumed"],
            "resume_seconds": resumed["seconds"], "full_run_seconds": full_seconds, "mask_bytes_identical": same}  # fmt: skip


def _stripe(out: Path, side: int) -> int:
    import zarr

    return zarr.open_array(str(out / f"s{side}_mask.partial.zarr"), mode="r").attrs["sunet_job"]["stripe"]


def markdown(result: dict) -> str:
    scene, rows, resume = result["scene"], result["sizes"], result["resume"]
    lines = ["# Images larger than memory", "", f"Model: `{result['model']}`; flags: `{' '.join(result['flags'])}`; "
             f"{result['cpus']} CPUs (shared; load average at start {result['load']}).", "",
             f"## Same scene, PNG vs tiled BigTIFF ({scene['size'][1]}x{scene['size'][0]})", "",
             f"- masks identical: **{scene['identical']}** ({scene['pixels_different']} pixels differ); "
             f"scene_overview.png beside the TIFF mask: {scene['overview_beside_tiff_mask']}",
             f"- mIoU vs labels: PNG {scene['miou_png']:.4f}, TIFF {scene['miou_tiff']:.4f}",
             f"- PNG run {scene['png_run']['seconds']} s, peak RSS {scene['png_run']['peak_rss_mib']} MiB; "
             f"TIFF run {scene['tiff_run']['seconds']} s, peak RSS {scene['tiff_run']['peak_rss_mib']} MiB", "",
             "## Peak memory against size (each under RLIMIT_AS)", "",
             "| side | uncompressed MiB | file MiB | RLIMIT_AS MiB | exit | peak RSS MiB | Mpx/s | seconds |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['side']} | {r['uncompressed_mib']} | {r['file_mib']} | {r['limit_mib']} | {r['rc']} | "
              f"{r['peak_rss_mib']} | {r['mpx_per_s']} | {r['seconds']} |" for r in rows]  # fmt: skip
    big = rows[-1]
    if "in_memory" in big:
        m = big["in_memory"]
        lines += ["", f"Largest: mIoU vs labels {big['miou']:.4f}. The same scene as one PNG read whole (the in-memory "
                  f"path, {HUGE_FLAG} and no memory limit): mIoU {m['miou_in_memory']:.4f}, {m['pixels_different']} pixels "
                  f"differ from the tiled BigTIFF's mask; peak RSS {m['peak_rss_mib']} MiB against "
                  f"{big['peak_rss_mib']} MiB, {m['seconds']} s against {big['seconds']} s."]  # fmt: skip
    lines += ["", f"## Killed (SIGKILL) after half the stripes, then --resume ({resume['side']}^2)", "",
              f"- killed after {resume['killed_after_s']} s with {resume['stripes_done_at_kill']} of {resume['stripes']} "
              f"stripes done; the resume reused {resume['stripes_resumed']} and took {resume['resume_seconds']} s "
              f"(the uninterrupted run: {resume['full_run_seconds']} s)",
              f"- final mask bytes identical to the uninterrupted run's: **{resume['mask_bytes_identical']}**", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.large_images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("model", help="a model predict opens (an .onnx file)")
    add_flag(parser, "--output", default=Path("docs/bench/large"), help="report folder")
    add_flag(parser, "--workdir", default=Path("runs/large_images"), help="scenes, images and masks (GBs for the large sizes)")
    parser.add_argument("--sides", type=int, nargs=3, default=[5000, 10000, 20000])
    add_flag(parser, "--scene", default=(4000, 6000))
    parser.add_argument("--predict-tile", default="256", metavar="SIZE|HxW", help="predict's --tile (default 256)")
    parser.add_argument("--limit-mib", type=int, default=1024, help="RLIMIT_AS of each sized run (default 1024)")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    flags = ["--tile", args.predict_tile]
    result = {"model": args.model, "flags": flags, "cpus": os.cpu_count(), "load": round(os.getloadavg()[0], 1)}
    result["scene"] = scene_pair(args.model, args.workdir, tuple(args.scene), flags)
    print(result["scene"], flush=True)
    result["sizes"] = sizes_run(args.model, args.workdir, args.sides, flags, args.limit_mib * 2**20)
    middle = result["sizes"][1]
    result["resume"] = resume_run(args.model, args.workdir, middle["side"], flags, middle["seconds"])
    save_report(result, markdown(result), args.output, "report")
    return 0


if __name__ == "__main__":
    sys.exit(main())

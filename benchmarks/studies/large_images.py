"""`python -m benchmarks.studies.large_images MODEL --out docs/bench/large`: predict on images larger than memory.

Synthetic scenes with known labels (sunet_deploy.data.mosaic) written as tiled BigTIFFs, each run by
`python -m runtimes.predict` in a child process:

1. the same scene (default 4000x6000) as a PNG (read whole, today's path) and as a tiled BigTIFF
   (read in parts): the masks must be pixel-identical, and so their mIoU against the labels;
2. three sizes (default 5000, 10000, 20000 on a side), each under a hard address-space limit
   (RLIMIT_AS, default 1 GiB, set in the child before exec; MALLOC_ARENA_MAX=2 so that glibc does not
   reserve 64 MiB of address space per thread) smaller than the largest scene's uncompressed RGB:
   peak RSS (the child's ru_maxrss), Mpx/s; the largest one's mIoU against its labels, and the same
   protocol on in-memory crops (PNG crops of the scene, read whole) against the same pixels of it;
3. the middle size killed (SIGKILL) once half of its stripes are done, then `--resume`: the mask's
   bytes against the uninterrupted run's, and the resume's time against the full run's.

Writes report.json and report.md to --out. Seconds and Mpx/s depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from sunet_deploy.bigimage import open_lazy, read_mask
from sunet_deploy.data.mosaic import SyntheticMosaic
from sunet_deploy.flags import add_flag
from sunet_deploy.lifetime import die_with_parent
from sunet_deploy.metrics import ConfusionMatrix
from sunet_deploy.pipeline.palettes import read_label_png

from ..harness.report import write_json


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
    import json

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


def pixel_model(source: str, path: Path) -> str:
    """A 1x1 convolution (3 -> the model's classes) with `source`'s inputs, outputs and metadata: the
    pipeline's cost, not a network's, on a slow CPU."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(source)
    inp, out = model.graph.input[0], model.graph.output[0]
    from runtimes import open_runtime

    classes = open_runtime(source).metadata.num_classes
    weights = np.random.default_rng(0).normal(size=(classes, 3, 1, 1)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", [inp.name, "w"], [out.name])], "pixel", [inp], [out],
                              initializer=[numpy_helper.from_array(weights, "w")])  # fmt: skip
    pixel = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    pixel.metadata_props.extend(model.metadata_props)
    onnx.save(pixel, path)
    return str(path)


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


def sizes_run(model: str, work: Path, sides: list[int], flags: list[str], limit: int, crops: int) -> list[dict]:
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
            row["crops"] = crop_check(model, work, mosaic, mask, flags, crops)
        rows.append(row)
        print(row, flush=True)
    return rows


def crop_check(model: str, work: Path, mosaic: SyntheticMosaic, mask, flags: list[str], count: int) -> dict:
    """The same protocol on in-memory crops (PNGs read whole) against the same pixels of the lazy run."""
    side, regions = min(2048, mosaic.size[0] // 2), []
    folder = work / "crops"
    folder.mkdir(exist_ok=True)
    for k in range(count):
        r0 = c0 = (k + 1) * (mosaic.size[0] - side) // (count + 1) // 512 * 512
        regions.append((r0, r0 + side, c0, c0 + side))
        cv2.imwrite(str(folder / f"crop{k}.png"), cv2.cvtColor(mosaic.region(*regions[-1])[0], cv2.COLOR_RGB2BGR))
    run = predict(model, folder, work / "out_crops", flags)
    cm_mem, agree = ConfusionMatrix(mosaic.num_classes), 0
    for k, region in enumerate(regions):
        crop_mask = read_label_png(work / "out_crops" / f"crop{k}_mask.png")
        cm_mem.update(crop_mask, mosaic.region(*region)[1])
        agree += int((crop_mask == np.asarray(mask[region[0] : region[1], region[2] : region[3]])).sum())
    return {"regions": regions, "rc": run["rc"], "miou_in_memory_crops": float(cm_mem.scores().miou),
            "miou_lazy_same_pixels": miou(mask, mosaic, regions),
            "pixel_agreement": agree / (count * side * side)}  # fmt: skip


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
             f"## Same scene, PNG vs tiled BigTIFF ({scene['size'][1]}x{scene['size'][0]}, `{result['scene_model']}`)", "",
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
    if "crops" in big:
        c = big["crops"]
        lines += ["", f"Largest: mIoU vs labels {big['miou']:.4f}. In-memory crops ({len(c['regions'])} crops, "
                  f"PNGs read whole): mIoU {c['miou_in_memory_crops']:.4f}; the lazy mask on the same pixels "
                  f"{c['miou_lazy_same_pixels']:.4f}; pixel agreement {c['pixel_agreement']:.4f} (1 for a model whose "
                  "output at a pixel depends on that pixel alone; otherwise a crop's windows start at its own "
                  "corner and its border pixels see other windows)."]  # fmt: skip
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
    parser.add_argument("--crops", type=int, default=2)
    parser.add_argument("--scene-model", help="the model of step 1 (default: MODEL)")
    parser.add_argument("--pixel", action="store_true", help="steps 2-3 on a 1x1 convolution with MODEL's metadata "
                        "(step 1 on MODEL)")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.pixel:
        args.scene_model = args.scene_model or args.model
        args.model = pixel_model(args.model, args.workdir / "pixel.onnx")
    flags = ["--tile", args.predict_tile]
    result = {"model": args.model, "flags": flags, "cpus": os.cpu_count(), "load": round(os.getloadavg()[0], 1)}
    result["scene_model"] = args.scene_model or args.model
    result["scene"] = scene_pair(result["scene_model"], args.workdir, tuple(args.scene), flags)
    print(result["scene"], flush=True)
    result["sizes"] = sizes_run(args.model, args.workdir, args.sides, flags, args.limit_mib * 2**20, args.crops)
    middle = result["sizes"][1]
    result["resume"] = resume_run(args.model, args.workdir, middle["side"], flags, middle["seconds"])
    args.output.mkdir(parents=True, exist_ok=True)
    write_json(result, args.output / "report.json")
    (args.output / "report.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

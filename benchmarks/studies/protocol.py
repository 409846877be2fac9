"""`python -m benchmarks.studies.protocol CHECKPOINT`: the inference protocol on large images, measured.

    python -m benchmarks.studies.protocol runs/demo/best.safetensors --output docs/bench/protocol

A study, not maintained: it reproduces the committed reports under docs/bench/protocol/ (scene.md,
rss.md, speed.md, read by docs/inference.md). Its protocols are fixed here (TILE and the speed
settings), not taken from the protocol flags, and its images are the checkpoint's recorded
synthetic validation set, not the dataset flags.

Three parts (--parts), one report (protocol.md and protocol.json):

scene  A large scene with known labels: validation-style synthetic images (the checkpoint's recorded
       synthetic validation set, continued past its length with the same seed and split) stitched
       edge to edge and cropped to --scene HxW, so that objects keep the scale the model was trained
       on, as in an aerial scene. `runtimes.predict` runs it whole and with --tile on the dynamic
       ONNX export, and with windows of their size on a static ONNX export and an AOTInductor
       package (and letterboxed into the static one, for contrast); mIoU of each written mask.
rss    Peak resident memory of one process that opens the ONNX model and segments one square image
       (tiled: --tile 512 --tile-overlap 128; whole: one call), per size, each in a fresh process.
speed  What the protocol costs on one image: views x windows, and what batching windows saves, every
       setting timed round-robin in one run on the dynamic ONNX model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from runtimes import open_runtime
from runtimes.predict import Predictor
from runtimes.predict import main as predict_main
from sunet_deploy.artifact import read_checkpoint_info
from sunet_deploy.cli import EXIT_OK, EXIT_STATUS_HELP, EXIT_USAGE
from sunet_deploy.data import SyntheticSegmentation, validation_spec
from sunet_deploy.flags import add_flag
from sunet_deploy.formats import AotiRecipe, OnnxRecipe
from sunet_deploy.metrics import ConfusionMatrix
from sunet_deploy.pipeline.palettes import read_label_png, save_palette_png
from sunet_deploy.protocol import Protocol

from ..harness.env import environment, format_environment
from ..harness.report import save_report

TILE = Protocol(window=(512, 512), stride=(384, 384), batch=4)
"""`--tile 512 --tile-overlap 128` with predict's default batch."""


def stitched_scene(meta, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An image and its labels of `size`, tiled from the recorded synthetic validation images."""
    spec = validation_spec(meta)
    if spec is None or spec.kind != "synthetic":
        raise ValueError("the checkpoint records no synthetic validation set to build a scene from")
    th, tw = spec.size
    rows, cols = -(-size[0] // th), -(-size[1] // tw)
    source = SyntheticSegmentation(rows * cols, spec.size, spec.num_classes, spec.seed, spec.split)
    image, label = np.zeros((rows * th, cols * tw, 3), np.uint8), np.zeros((rows * th, cols * tw), np.uint8)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        image[r * th : (r + 1) * th, c * tw : (c + 1) * tw], label[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = source[i]
    return image[: size[0], : size[1]].copy(), label[: size[0], : size[1]].copy()


def miou(mask: np.ndarray, label: np.ndarray, num_classes: int) -> float:
    confusion = ConfusionMatrix(num_classes)
    confusion.update(mask, label)
    return 100 * confusion.scores().miou


def predict_case(name: str, model: Path, image: Path, flags: list[str], out: Path) -> dict:
    """Run `runtimes.predict` on the scene and score the mask it wrote."""
    start = time.perf_counter()
    code = predict_main([str(model), str(image), "-o", str(out / name), "--overwrite", *flags])
    seconds = time.perf_counter() - start
    summary = json.loads((out / name / "predict_summary.json").read_text())
    mask = read_label_png(out / name / f"{image.stem}_mask.png") if code == EXIT_OK else None
    return {"case": name, "model": model.name, "flags": " ".join(flags) or "(none)", "exit": code,
            "mask_shape": list(mask.shape) if mask is not None else None, "seconds": round(seconds, 1),
            "letterboxed": summary["letterboxed_images"], "protocol": (summary["protocol"] or {}).get("description"),
            "_mask": mask}  # fmt: skip


def scene_part(args: argparse.Namespace, meta) -> dict:
    from export.aoti import export_aoti
    from export.onnx import export_onnx

    work = args.workdir
    image, label = stitched_scene(meta, args.scene)
    scene = work / "scene.png"
    cv2.imwrite(str(scene), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    save_palette_png(work / "scene_label.png", label, np.asarray(meta.palette, np.uint8))
    del image
    dynamic = export_onnx(args.checkpoint, work / "dynamic.onnx").path
    static = export_onnx(args.checkpoint, work / "static_512.onnx", OnnxRecipe(static=(512, 512))).path
    cases = [("onnx-whole", dynamic, []), ("onnx-tiled", dynamic, ["--tile", "512", "--tile-overlap", "128"]),
             ("static-onnx-tiled", static, ["--tile-overlap", "128"]), ("static-onnx-letterbox", static, ["--letterbox"])]
    if not args.skip_aoti:
        aoti = work / "aoti_512.pt2"
        if not aoti.is_file():
            export_aoti(args.checkpoint, aoti, AotiRecipe(size=(512, 512)))
        cases.append(("aoti-tiled", aoti, ["--tile-overlap", "128"]))
    rows = []
    for name, model, flags in cases:
        row = predict_case(name, model, scene, flags, work / "predictions")
        mask = row.pop("_mask")
        row["miou"] = miou(mask, label, meta.num_classes) if mask is not None else None
        if mask is not None and name != "onnx-whole":
            reference = read_label_png(work / "predictions" / "onnx-tiled" / "scene_mask.png")
            row["agreement_with_onnx_tiled"] = 100 * float((mask == reference).mean())
        rows.append(row)
        print(f"{name}: mIoU {row['miou']}, {row['seconds']} s", flush=True)
    return {"scene": f"{args.scene[0]}x{args.scene[1]} (HxW)", "rows": rows}


# ---------------------------------------------------------------- peak memory, one process per case


def rss_child(model: str, mode: str, side: int, tile_block: int = 16) -> None:
    """Print the peak RSS of segmenting one side x side image (run in a fresh process)."""
    import resource

    from sunet_deploy.artifact import read_onnx_info

    meta = read_onnx_info(model).metadata
    block, _ = stitched_scene(meta, (tile_block * 128, tile_block * 128))
    with open_runtime(model) as runtime:
        predictor = Predictor(runtime, TILE if mode == "tiled" else None)
        predictor.mask(block[:256, :256])  # warm: the runtime's own allocations are the baseline
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        reps = -(-side // block.shape[0])
        image = np.tile(block, (reps, reps, 1))[:side, :side].copy()
        del block
        start = time.perf_counter()
        mask = predictor.mask(image)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"mode": mode, "side": side, "peak_bytes": peak, "baseline_bytes": baseline,
                      "image_bytes": image.nbytes, "mask_bytes": mask.nbytes, "seconds": round(seconds, 1)}))  # fmt: skip


def rss_part(args: argparse.Namespace, model: Path) -> dict:
    rows = []
    for mode, sides in (("whole", args.whole_sizes), ("tiled", args.tiled_sizes)):
        for side in sides:
            code = f"from benchmarks.studies.protocol import rss_child; rss_child({str(model)!r}, {mode!r}, {side})"
            result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if result.returncode != 0:
                rows.append({"mode": mode, "side": side, "error": (result.stderr.strip().splitlines() or ["?"])[-1]})
            else:
                rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    return {"rows": rows}


# ---------------------------------------------------------------- speed


def window_count(protocol: Protocol, size: tuple[int, int]) -> int:
    from sunet_deploy.protocol import window_starts

    total = 0
    for scale in protocol.scales:
        hs, ws = protocol.view_size(size, scale)
        wh, ww = (min(protocol.window[0], hs), min(protocol.window[1], ws)) if protocol.window else (hs, ws)
        stride = protocol.stride or (wh, ww)
        views = 2 if protocol.flip else 1
        total += views * len(window_starts(hs, wh, stride[0])) * len(window_starts(ws, ww, stride[1]))
    return total


def speed_part(args: argparse.Namespace, model: Path, meta) -> dict:
    side = args.speed_size
    image, _ = stitched_scene(meta, (side, side))
    tile, stride = (args.speed_tile,) * 2, (args.speed_tile * 3 // 4,) * 2
    settings = {"whole image": None}
    for batch in (1, 4, 16):
        settings[f"tiles, batch {batch}"] = Protocol(window=tile, stride=stride, batch=batch)
    settings["4 scales + flip, tiles, batch 4"] = Protocol((0.5, 0.75, 1.0, 1.25), flip=True, window=tile, stride=stride, batch=4)
    settings["4 scales + flip, tiles, batch 16"] = Protocol((0.5, 0.75, 1.0, 1.25), flip=True, window=tile, stride=stride, batch=16)
    times: dict[str, list[float]] = {name: [] for name in settings}
    with open_runtime(model) as runtime:
        predictors = {name: Predictor(runtime, p) for name, p in settings.items()}
        for name, predictor in predictors.items():  # warm every shape once
            predictor.mask(image)
        for _ in range(args.repeats):
            for name, predictor in predictors.items():
                start = time.perf_counter()
                predictor.mask(image)
                times[name].append(time.perf_counter() - start)
    base = float(np.median(times["whole image"]))
    rows = []
    for name, protocol in settings.items():
        median = float(np.median(times[name]))
        rows.append({"setting": name, "views": protocol.views if protocol else 1,
                     "windows": window_count(protocol, (side, side)) if protocol else 1,
                     "median_s": round(median, 3), "relative_to_whole": round(median / base, 2)})  # fmt: skip
    return {"image": f"{side}x{side}", "tile": f"{tile[0]}x{tile[1]} at stride {stride[0]}", "repeats": args.repeats,
            "rows": rows}


# ---------------------------------------------------------------- report


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _rss_row(r: dict) -> list:
    if "error" in r:
        return [r["mode"], f"{r['side']}²", f"failed: {r['error']}", "", "", "", ""]
    mib = {k: r[k] / 2**20 for k in ("peak_bytes", "baseline_bytes", "image_bytes", "mask_bytes")}
    rest = mib["peak_bytes"] - mib["baseline_bytes"] - mib["image_bytes"] - mib["mask_bytes"]
    return [r["mode"], f"{r['side']}²", f"{mib['peak_bytes']:.0f}", f"{mib['baseline_bytes']:.0f}",
            f"{mib['image_bytes'] + mib['mask_bytes']:.0f}", f"{rest:.0f}", r["seconds"]]  # fmt: skip


def markdown(result: dict) -> str:
    parts = ["# The inference protocol on large images", "## Environment", format_environment(result["environment"]),
             f"checkpoint `{result['checkpoint']}`"]  # fmt: skip
    if "scene" in result:
        s = result["scene"]
        rows = [[r["case"], r["model"], f"`{r['flags']}`", r["mask_shape"], _num(r["miou"]),
                 _num(r.get("agreement_with_onnx_tiled"), 3), r["letterboxed"], r["seconds"]] for r in s["rows"]]  # fmt: skip
        parts += ["## Scene", f"{s['scene']} stitched from validation-style synthetic images; `runtimes.predict`, "
                  "mIoU of the mask it wrote", _table(["case", "model", "flags", "mask", "mIoU",
                  "agreement with onnx-tiled (%)", "letterboxed", "seconds"], rows)]  # fmt: skip
    if "rss" in result:
        header = ["mode", "image", "peak RSS (MiB)", "process before the image (MiB)", "image + mask (MiB)",
                  "rest (MiB)", "seconds"]  # fmt: skip
        parts += ["## Peak memory", _table(header, [_rss_row(r) for r in result["rss"]["rows"]])]
    if "speed" in result:
        s = result["speed"]
        rows = [[r["setting"], r["views"], r["windows"], r["median_s"], r["relative_to_whole"]] for r in s["rows"]]
        parts += ["## Speed", f"image {s['image']}, windows {s['tile']}, median of {s['repeats']} round-robin runs",
                  _table(["setting", "views", "windows", "median (s)", "x whole image"], rows)]
    return "\n\n".join(parts) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.protocol", description=__doc__, epilog=EXIT_STATUS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a trained checkpoint that records a synthetic validation set")
    parser.add_argument("--parts", nargs="+", choices=("scene", "rss", "speed"), default=["scene", "rss", "speed"])
    add_flag(parser, "--scene", default=(4000, 6000))
    parser.add_argument("--skip-aoti", action="store_true", help="scene: no AOTInductor package (compiling takes minutes)")
    parser.add_argument("--whole-sizes", type=int, nargs="*", default=[2000, 4000], help="rss: sides run whole")
    parser.add_argument("--tiled-sizes", type=int, nargs="*", default=[2000, 8000, 16000], help="rss: sides run tiled")
    parser.add_argument("--speed-size", type=int, default=1024, help="speed: side of the image")
    parser.add_argument("--speed-tile", type=int, default=256, help="speed: window side (overlap a quarter)")
    parser.add_argument("--repeats", type=int, default=3, help="speed: timed runs of every setting")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench/protocol"), help="exports, scene, masks")
    parser.add_argument("--output", type=Path, default=Path("runs/bench/protocol"), help="report folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        meta = read_checkpoint_info(args.checkpoint).metadata
        stitched_scene(meta, (1, 1))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from export.onnx import export_onnx

    args.workdir.mkdir(parents=True, exist_ok=True)
    result = {"environment": environment(), "checkpoint": str(args.checkpoint)}
    if "scene" in args.parts:
        result["scene"] = scene_part(args, meta)
    model = args.workdir / "dynamic.onnx"
    if not model.is_file() and {"rss", "speed"} & set(args.parts):
        export_onnx(args.checkpoint, model)
    if "rss" in args.parts:
        result["rss"] = rss_part(args, model)
    if "speed" in args.parts:
        result["speed"] = speed_part(args, model, meta)
    save_report(result, markdown(result), args.output, "protocol")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

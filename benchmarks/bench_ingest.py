"""Image ingestion throughput: `preprocess_images` against a minimal DICOM-to-PNG loop.

Writes realistic-size synthetic radiographs (12 of 16 bits, MONOCHROME2, uncompressed explicit
VR little endian, as MIMIC-CXR ships them) to a temporary folder, then times, on the same files:

- baseline: dcmread -> pixel_array -> min-max to uint8 -> Pillow thumbnail -> PNG, nothing else;
- the pipeline with 1 worker (it also hashes the source, applies modality/VOI LUTs, stores the PNG
  atomically by content hash and records metadata);
- the pipeline with 2 workers.

The baseline resizes with the same filter and saves with the same PNG level as the pipeline, so
the ratio measures what the pipeline adds, not a different resize or compression choice. Targets:
1 worker >= 0.9x the baseline's images/s; 2 workers >= 1.7x the pipeline's own 1-worker rate.
Wall-clock rates need otherwise idle cores (the load average is printed); CPU ms per image (this
process plus its pool workers) is the figure to compare when the machine is shared.

    python benchmarks/bench_ingest.py --images 24
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread

from cpo_pipeline.demo.dicom import write_dx_dicom
from cpo_pipeline.demo.phantom import render_chest_phantom
from cpo_pipeline.ingestion.image_store import PNG_COMPRESS_LEVEL
from cpo_pipeline.ingestion.images import ImageJob, PreprocessConfig, preprocess_images

ONE_WORKER = 0.9  # target: x the baseline's images/s
TWO_WORKERS = 1.7  # target: x the pipeline's own 1-worker images/s


def baseline(paths: list[Path], out: Path, longest_side: int) -> None:
    """The least a DICOM-to-PNG loop can do."""
    out.mkdir()
    for index, path in enumerate(paths):
        stored = dcmread(path).pixel_array
        lowest, highest = stored.min(), stored.max()
        pixels = ((stored - lowest) / (highest - lowest) * 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        image.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
        image.save(out / f"{index}.png", compress_level=PNG_COMPRESS_LEVEL)


@dataclass(frozen=True)
class Measurement:
    images_per_s: float  # wall clock, fastest repeat
    cpu_ms_per_image: float  # this process and its pool workers, leanest repeat


def _cpu_seconds() -> float:
    # Pool workers count once reaped, which the pool's shutdown does before `run` returns.
    usages = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


def measure(
    runs: dict[str, Callable[[Path], None]], images: int, scratch: Path, repeats: int
) -> dict[str, Measurement]:
    """Time each run `repeats` times, interleaved so that load from elsewhere on the machine
    spreads over all figures; each repeat writes into a fresh folder."""
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(repeats):
        for index, (name, run) in enumerate(runs.items()):
            cpu_start, wall_start = _cpu_seconds(), time.perf_counter()
            run(scratch / f"out-{repeat}-{index}")
            wall[name].append(time.perf_counter() - wall_start)
            cpu[name].append(_cpu_seconds() - cpu_start)
    return {
        name: Measurement(images / min(wall[name]), 1000 * min(cpu[name]) / images) for name in runs
    }


def run_pipeline(jobs: list[ImageJob], out: Path, longest_side: int, workers: int) -> None:
    config = PreprocessConfig(store_root=str(out), longest_side=longest_side)
    _, rejects = preprocess_images(jobs, config, workers=workers)
    if rejects:
        raise RuntimeError(f"the pipeline rejected benchmark images: {rejects}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--cols", type=int, default=2500)
    parser.add_argument("--longest-side", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs each")
    args = parser.parse_args()
    side = args.longest_side

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        scratch = Path(tmp)
        rng = np.random.default_rng(0)
        paths = [scratch / f"{index:04d}.dcm" for index in range(args.images)]
        for index, path in enumerate(paths):
            # The demo's own chest phantom and DX writer: 16 bits allocated, 12 stored, a VOI
            # window in the header, as the real files are.
            pixels = render_chest_phantom({}, "PA", (args.rows, args.cols), rng)
            write_dx_dicom(path, pixels, subject_id=10_000_000 + index,
                           study_id=50_000_000 + index, dicom_id=f"{index:08x}-0-0-0-0",
                           view_position="PA", study_date="21500101", study_time="120000",
                           uid_seed=index)
        jobs = [
            ImageJob(str(path), f"bench-{index}", 50000000 + index, 10000000 + index)
            for index, path in enumerate(paths)
        ]
        load_before = os.getloadavg()[0]
        figures = measure(
            {
                "baseline": lambda out: baseline(paths, out, side),
                "one": lambda out: run_pipeline(jobs, out, side, workers=1),
                "two": lambda out: run_pipeline(jobs, out, side, workers=2),
            },
            args.images,
            scratch,
            args.repeats,
        )

    base, one, two = figures["baseline"], figures["one"], figures["two"]
    print(
        f"{args.images} DICOMs of {args.rows}x{args.cols}, 12 of 16 bits, uncompressed -> PNG, "
        f"longest side {side}; best of {args.repeats} interleaved runs; {os.cpu_count()} CPUs, "
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(f"{'figure':<24} {'images/s':>9} {'CPU ms/img':>11}  {'ratio':<17} {'target':<18} met")
    print(
        f"{'baseline: minimal loop':<24} {base.images_per_s:>9.2f} {base.cpu_ms_per_image:>11.1f}"
    )
    for name, figure, ratio, versus, target in (
        ("pipeline, 1 worker", one, one.images_per_s / base.images_per_s, "baseline", ONE_WORKER),
        ("pipeline, 2 workers", two, two.images_per_s / one.images_per_s, "1 worker", TWO_WORKERS),
    ):
        print(
            f"{name:<24} {figure.images_per_s:>9.2f} {figure.cpu_ms_per_image:>11.1f}  "
            f"{f'{ratio:.2f}x {versus}':<17} {f'>= {target:.2f}x {versus}':<18} "
            f"{'yes' if ratio >= target else 'NO'}"
        )


if __name__ == "__main__":
    main()

"""Time NIfTI -> model-ready volume (read, reorient, resample, window, crop / pad) on one core.

    python benchmarks/volume_throughput.py [--repeats 3]
        [--out benchmarks/results/volume_throughput.json]

Two inputs: a synthetic CT-sized scan (512 x 512 x 200 int16, 0.7 x 0.7 x 1.25 mm, stored LPS
as DICOM-derived NIfTI usually is, scl_slope 1 / scl_inter -1024) written as .nii.gz to a
temporary folder, and nibabel's real T1 (33 x 41 x 25, 2 mm, LAS). Both go through the same
spec: RAS, 1.5 mm isotropic, lung / mediastinum / bone windows, (D, H, W) = (64, 128, 128).
Prints and writes wall seconds per stage and volumes per second per core (the median of the
repeats; numerical libraries are pinned to one thread), and CPU seconds of the whole, which a
busy shared machine inflates less than wall time.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from nibabel.testing import data_path  # noqa: E402

from radfm_jax.data.nifti import read_nifti  # noqa: E402
from radfm_jax.data.preprocessing import PreprocessSpec  # noqa: E402
from radfm_jax.data.volume_ops import reorient, resample  # noqa: E402

SPEC = PreprocessSpec(kind="volume3d", size=(64, 128, 128), spacing=(1.5, 1.5, 1.5),
                      windows=("lung", "mediastinum", "bone"))


def write_synthetic_ct(path: Path, shape=(512, 512, 200), spacing=(0.7, 0.7, 1.25)) -> None:
    """A chest-like phantom: air, an elliptic body of soft tissue, two lungs, a bone ring."""
    rng = np.random.default_rng(0)
    x = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None]
    y = np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :]
    body = (x / 0.85) ** 2 + (y / 0.6) ** 2
    axial = np.full(shape[:2], -1000.0, np.float32)
    axial[body < 1] = 40.0
    axial[(body < 0.85) & (body > 0.75)] = 700.0  # ribs as a ring
    for side in (-0.4, 0.4):
        axial[((x - side) / 0.3) ** 2 + (y / 0.4) ** 2 < 1] = -820.0
    noise = rng.normal(0, 15, size=shape).astype(np.float32)
    hu = axial[..., None] + noise
    stored = np.clip(np.rint(hu + 1024), -32768, 32767).astype(np.int16)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])  # LPS voxel axes in RAS mm
    image = nib.Nifti1Image(stored, affine)
    image.header.set_slope_inter(1.0, -1024.0)
    image.header.set_data_dtype(np.int16)
    nib.save(image, path)


def time_stages(path: Path, repeats: int) -> dict:
    """Median seconds of read + SPEC.apply_volume, and of its first stages timed on their own
    (the rest, layout + windows + crop / pad + quantise, is the remainder)."""
    stages: dict[str, list[float]] = {k: [] for k in ("read", "reorient", "resample", "total")}
    cpu: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        volume = read_nifti(path)
        t1 = time.perf_counter()
        oriented = reorient(volume, SPEC.orientation)
        t2 = time.perf_counter()
        resampled = resample(oriented, SPEC.spacing)
        t3, c3 = time.perf_counter(), time.process_time()
        out = SPEC.apply_volume(read_nifti(path))
        t4 = time.perf_counter()
        cpu.append(time.process_time() - c3)
        assert out.shape == (*SPEC.size, SPEC.channels) and out.dtype == np.uint8
        for key, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            stages[key].append(seconds)
    median = {f"{k}_s": statistics.median(v) for k, v in stages.items()}
    median["layout_window_box_s"] = max(0.0, median["total_s"] - median["read_s"]
                                        - median["reorient_s"] - median["resample_s"])
    return {
        "input_shape": list(volume.values.shape),
        "input_spacing_mm": [round(s, 4) for s in volume.spacing],
        "input_axcodes": "".join(nib.aff2axcodes(volume.affine)),
        "resampled_shape": list(resampled.values.shape),
        "file_mb": round(path.stat().st_size / 1e6, 2),
        **{k: round(v, 4) for k, v in median.items()},
        "volumes_per_sec_per_core": round(1.0 / median["total_s"], 3),
        # CPU seconds are what one core spends, unaffected by waiting for a shared machine.
        "total_cpu_s": round(statistics.median(cpu), 4),
        "volumes_per_cpu_sec": round(1.0 / statistics.median(cpu), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/volume_throughput.json")
    args = ap.parse_args()

    results = {"spec": SPEC.to_metadata(), "repeats": args.repeats, "threads": 1}
    with tempfile.TemporaryDirectory() as tmp:
        ct_path = Path(tmp) / "synthetic_ct.nii.gz"
        t0 = time.perf_counter()
        write_synthetic_ct(ct_path)
        results["synthetic_ct_write_s"] = round(time.perf_counter() - t0, 2)
        results["synthetic_ct"] = time_stages(ct_path, args.repeats)
    results["nibabel_t1"] = time_stages(Path(data_path) / "anatomical.nii", max(args.repeats, 20))

    print(json.dumps(results, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

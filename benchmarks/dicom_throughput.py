"""DICOM -> model-ready 224x224 uint8 images per second on one core (single process).

Per image: read_dicom (file read, pixel decode, modality LUT) -> to_display (header VOI LUT /
window, MONOCHROME1 inversion) -> fixed resize of the whole image to 224x224 with PIL's
bilinear filter on the float32 image (antialiased when shrinking; non-square images are
stretched) -> rounded uint8. Inputs are real pydicom-data files: the CR chest radiograph
(uncompressed and lossless JPEG 2000) and CT slices.

    python benchmarks/dicom_throughput.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.data import get_testdata_file

from radfm_jax.data.dicom import read_dicom, to_display

SIZE = 224
FILES = {
    "cr_chest_1955x1841_uncompressed": "RG1_UNCI.dcm",
    "cr_chest_1955x1841_jpeg2000_lossless": "RG1_J2KR.dcm",
    "ct_512x512_uncompressed": "693_UNCI.dcm",
    "ct_128x128_uncompressed": "CT_small.dcm",
}


def model_ready(path: str) -> tuple[np.ndarray, dict[str, float]]:
    """One image through the whole path, with the seconds spent in each stage."""
    start = time.perf_counter()
    image = read_dicom(path)
    read = time.perf_counter()
    shown = to_display(image)
    display = time.perf_counter()
    resized = np.asarray(Image.fromarray(shown, mode="F").resize((SIZE, SIZE), Image.BILINEAR))
    pixels = np.rint(np.clip(resized, 0, 1) * 255).astype(np.uint8)
    end = time.perf_counter()
    return pixels, {"read_s": read - start, "display_s": display - read, "resize_s": end - display}


def measure(path: str, seconds: float) -> dict:
    pixels, _ = model_ready(path)  # warm caches and imports
    assert pixels.shape == (SIZE, SIZE) and pixels.dtype == np.uint8
    stages: list[dict[str, float]] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(stages) < 5:
        stages.append(model_ready(path)[1])
    totals = [sum(s.values()) for s in stages]
    median = float(np.median(totals))
    return {
        "file": Path(path).name,
        "images": len(stages),
        "images_per_sec": 1.0 / median,
        "median_ms": 1e3 * median,
        **{f"median_{k[:-2]}_ms": 1e3 * float(np.median([s[k] for s in stages]))
           for k in stages[0]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per file")
    parser.add_argument("--out", default="benchmarks/results/dicom_throughput.json")
    args = parser.parse_args()
    results = {name: measure(get_testdata_file(file), args.seconds)
               for name, file in FILES.items()}
    print(f"{'input':40s} {'img/s/core':>10s} {'read ms':>8s} {'display':>8s} {'resize':>8s}")
    for name, r in results.items():
        print(f"{name:40s} {r['images_per_sec']:10.1f} {r['median_read_ms']:8.2f} "
              f"{r['median_display_ms']:8.2f} {r['median_resize_ms']:8.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "output": f"{SIZE}x{SIZE} uint8",
        "resize": "PIL Image.resize BILINEAR on float32, whole image stretched to 224x224",
        "processes": 1,
        "machine": platform.processor() or platform.machine(),
        "results": results,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

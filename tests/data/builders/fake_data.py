"""Fake copies of the published data sets, in their real layouts and column names, with tiny
images written by PIL; and helpers that build one into a temporary data folder and read it."""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from radfm_jax.data.preprocessing import PreprocessSpec

IMAGE_SIZE = 32
CHEXPERT_LABELS = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity",
                   "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis",
                   "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
                   "Support Devices"]
# MIMIC-CXR-JPG's label tables list the same observations alphabetically.
MIMIC_LABELS = sorted(CHEXPERT_LABELS)


def write_image(path: Path, seed: int, fmt: str = "PNG") -> None:
    """A distinct random grayscale image (no two seeds give equal pixels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 30), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path, format=fmt)


def write_corrupt(path: Path) -> None:
    """The first bytes of a real JPEG: a truncated file."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((40, 30), np.uint8), mode="L").save(buffer, format="JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[:60])


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def build(cls, manual_dir: Path | None, data_dir: Path, **options):
    """Build cls from manual_dir at IMAGE_SIZE with options; return the builder."""
    config_cls = type(cls.BUILDER_CONFIGS[0])
    config = config_cls(spec=PreprocessSpec(kind="image2d", size=(IMAGE_SIZE, IMAGE_SIZE)), **options)
    builder = cls(config=config, data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else str(manual_dir)))
    return builder


def records(builder) -> dict[str, list[dict]]:
    return {split: [src[i] for i in range(len(src))] for split, src in builder.as_data_source().items()}


def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------------------------
# CheXpert


def chexpert_row(prefix: str, split: str, patient: int, study: int, view: int, *, lateral=False,
                 ap_pa="PA", labels: dict[str, str] | None = None, sex="Female", age="63"):
    labels = labels or {}
    kind = "lateral" if lateral else "frontal"
    path = f"{prefix}/{split}/patient{patient:05d}/study{study}/view{view}_{kind}.jpg"
    return [path, sex, age, "Lateral" if lateral else "Frontal", "" if lateral else ap_pa,
            *[labels.get(c, "") for c in CHEXPERT_LABELS]]


CHEXPERT_HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS]


def make_chexpert(root: Path, prefix="CheXpert-v1.0-small", n_train_patients=30,
                  n_valid_patients=4) -> dict:
    """train.csv / valid.csv / JPEG images under root; returns what was written."""
    train, valid = [], []
    seed = 0
    for p in range(1, n_train_patients + 1):
        labels = ({"Cardiomegaly": "1.0", "Edema": "-1.0", "Pleural Effusion": "0.0"} if p % 2
                  else {"No Finding": "1.0"})
        train.append(chexpert_row(prefix, "train", p, 1, 1, labels=labels, ap_pa="AP" if p % 3 else "PA"))
        train.append(chexpert_row(prefix, "train", p, 1, 2, lateral=True, labels=labels))
    for p in range(n_train_patients + 1, n_train_patients + n_valid_patients + 1):
        valid.append(chexpert_row(prefix, "valid", p, 1, 1, labels={"Atelectasis": "1.0", "Edema": "0.0"}))
    for row in train + valid:
        seed += 1
        write_image(root / row[0].split("/", 1)[1], seed, "JPEG")
    write_csv(root / "train.csv", CHEXPERT_HEADER, train)
    write_csv(root / "valid.csv", CHEXPERT_HEADER, valid)
    return {"train": train, "valid": valid}



# ---------------------------------------------------------------------------------------------
# MIMIC-CXR-JPG

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough

 FINDINGS:
 
 The heart is mildly enlarged.  There is a small left pleural effusion.

 IMPRESSION:
 
 Cardiomegaly and small left effusion.
"""
MIMIC_SUBJECTS = [10000032 + i for i in range(12)]


def make_mimic(root: Path, *, reports="folder") -> dict:
    """Split / metadata / label tables, images and reports for 12 subjects, one study each
    with a PA and a LATERAL image. Subjects 0-7 train, 8-9 validate, 10-11 test."""
    split_rows, meta_rows, label_rows = [], [], []
    texts = {}
    for i, subject in enumerate(MIMIC_SUBJECTS):
        study = 50000000 + i
        split = "train" if i < 8 else "validate" if i < 10 else "test"
        labels = {"Cardiomegaly": "1.0", "Pleural Effusion": "-1.0", "Edema": "0.0"}
        negbio = {"Cardiomegaly": "1.0", "Pleural Effusion": "1.0", "Edema": ""}
        label_rows.append((subject, study, labels, negbio))
        for view, kind in (("PA", "f"), ("LATERAL", "l")):
            dicom = f"d{i:02d}{kind}-{subject}"
            split_rows.append([dicom, study, subject, split])
            meta_rows.append([dicom, subject, study, "CHEST (PA AND LAT)", view, 40, 30])
            image = root / f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom}.jpg"
            write_image(image, 2 * i + (kind == "l"), "JPEG")
        texts[f"files/p{str(subject)[:2]}/p{subject}/s{study}.txt"] = MIMIC_REPORT
    write_csv(root / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"],
              split_rows)
    write_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz",
              ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription",
               "ViewPosition", "Rows", "Columns"], meta_rows)
    for name, index in (("chexpert", 0), ("negbio", 1)):
        write_csv(root / f"mimic-cxr-2.0.0-{name}.csv.gz", ["subject_id", "study_id", *MIMIC_LABELS],
                  [[s, st, *[tables[index].get(c, "") for c in MIMIC_LABELS]]
                   for s, st, *tables in label_rows])
    if reports == "folder":
        for relative, body in texts.items():
            (root / relative).write_text(body)
    else:
        with zipfile.ZipFile(root / "mimic-cxr-reports.zip", "w") as archive:
            for relative, body in texts.items():
                archive.writestr(relative, body)
    return {"texts": texts}



# ---------------------------------------------------------------------------------------------
# NIH ChestX-ray14

NIH_HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
              "Patient Gender", "View Position", "OriginalImage[Width", "Height]",
              "OriginalImagePixelSpacing[x", "y]", ""]


def make_nih(root: Path, n_patients=24, n_test=4) -> dict:
    """Two follow-ups per patient in images_001/images and images_002/images; the last n_test
    patients are the official test list."""
    rows, train_val, test = [], [], []
    findings = ["No Finding", "Cardiomegaly|Effusion", "Hernia", "Infiltration|Mass|Nodule"]
    for p in range(1, n_patients + 1):
        for follow_up in range(2):
            name = f"{p:08d}_{follow_up:03d}.png"
            folder = "images_001/images" if p % 2 else "images_002/images"
            write_image(root / folder / name, p * 10 + follow_up)
            rows.append([name, findings[p % 4], follow_up, p, 40 + p, "M" if p % 2 else "F",
                         "PA" if follow_up == 0 else "AP", 30, 40, 0.143, 0.143, ""])
            (test if p > n_patients - n_test else train_val).append(name)
    write_csv(root / "Data_Entry_2017_v2020.csv", NIH_HEADER, rows)
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    return {"rows": rows, "train_val": train_val, "test": test}


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

from radfm_jax.data.builders.pseudonyms import (
    Pseudonymizer,
    SourceFiles,
    pseudonymous_source_path,
    read_key,
    resolve_key_path,
)
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


_SOURCE_FILES: dict[tuple[str, str], SourceFiles] = {}


def source(record, manual_dir: Path) -> str:
    """The real path, relative to manual_dir, of the file a record came from: its stored
    source_path (pseudonymous) mapped back with the pseudonym key of this test (the conftest
    points the key at a temporary folder), as a user with the key would."""
    key = read_key(resolve_key_path())
    files = _SOURCE_FILES.setdefault((str(manual_dir), key), SourceFiles(manual_dir, key))
    return files(text(record["source_path"])).relative_to(manual_dir).as_posix()


def stored_source(relative: str, keep: tuple[str, ...] = ()) -> str:
    """The source_path a record of the file at `relative` stores, under this test's key."""
    return pseudonymous_source_path(relative, Pseudonymizer(read_key(resolve_key_path())), keep)


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



# ---------------------------------------------------------------------------------------------
# DICOM radiographs (RSNA Pneumonia, SIIM-ACR Pneumothorax), written with pydicom


def write_dicom(path: Path, seed: int, *, patient_id: str, view: str = "PA", sex: str = "F",
                age: str = "051Y", study_uid: str | None = None, sop_uid: str | None = None,
                bits: int = 8, jpeg: bool = False) -> np.ndarray:
    """A valid single-frame CR image (MONOCHROME2, 8- or 16-bit, uncompressed or JPEG baseline
    as RSNA's files are); returns the stored pixels. Pixels span the full range, so the header-
    less display (min-max) is the stored value over its maximum."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

    top = 2**bits - 1
    pixels = np.random.default_rng(seed).integers(0, top + 1, (40, 30)).astype(np.uint8 if bits == 8 else np.uint16)
    pixels[0, 0], pixels[0, 1] = 0, top
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid or generate_uid(), generate_uid()
    ds.Modality, ds.BodyPartExamined = "CR", "CHEST"
    ds.PatientID, ds.PatientName, ds.PatientSex, ds.ViewPosition = patient_id, patient_id, sex, view
    from pydicom import config
    with config.disable_value_validation():  # RSNA's files write the age as a bare "51"
        ds.add_new("PatientAge", "AS", age)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, 0
    if jpeg:
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=95)
        ds.PixelData = encapsulate([buffer.getvalue()])
    else:
        ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return pixels


def truncate(path: Path, keep: int | None = None) -> None:
    """Cut a file short: by default 500 bytes into its end (the pixel data)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep if keep is not None else len(data) - 500])


RSNA_CLASSES = ("Lung Opacity", "No Lung Opacity / Not Normal", "Normal")


def rsna_patient(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def make_rsna(root: Path, n: int = 40) -> dict:
    """stage_2 labels / class tables and DICOM images for n patientIds: every third has
    pneumonia (two boxes when i % 6 == 0), the others are Normal or No Lung Opacity / Not
    Normal; views alternate PA / AP, sexes M / F, age 20 + i (a bare number, as Kaggle's
    files write it). Every fourth image is uncompressed, the rest JPEG baseline. Returns
    {patientId: (target, class, view, sex, age, stored pixels)}."""
    labels, classes, truth = [], [], {}
    for i in range(n):
        pid = rsna_patient(i)
        target = int(i % 3 == 0)
        if target:
            boxes = 2 if i % 6 == 0 else 1
            labels += [[pid, 100 + b, 200, 50, 80, 1] for b in range(boxes)]
            name = RSNA_CLASSES[0]
        else:
            labels.append([pid, "", "", "", "", 0])
            name = RSNA_CLASSES[1 + i % 2]
        classes += [[pid, name]] * (2 if i % 6 == 0 else 1)  # the class table repeats per box
        pixels = write_dicom(root / "stage_2_train_images" / f"{pid}.dcm", 1000 + i, patient_id=pid,
                             view="PA" if i % 2 else "AP", sex="M" if i % 2 else "F", age=str(20 + i),
                             jpeg=i % 4 != 0)
        truth[pid] = (target, name, "PA" if i % 2 else "AP", "M" if i % 2 else "F", 20 + i, pixels)
    write_csv(root / "stage_2_train_labels.csv", ["patientId", "x", "y", "width", "height", "Target"], labels)
    write_csv(root / "stage_2_detailed_class_info.csv", ["patientId", "class"], classes)
    return truth


def make_siim(root: Path, n_patients: int = 20) -> dict:
    """train-rle.csv (its published header " EncodedPixels", with the leading space) and
    dicom-images-train/<study>/<series>/<ImageId>.dcm. Patient p has two images when p % 4 == 0;
    image k of a patient has a pneumothorax (two masks when p % 6 == 0) when p % 3 == 0."""
    from pydicom.uid import generate_uid

    rows, truth = [], {}
    seed = 0
    for p in range(n_patients):
        patient = f"{p:04d}aa-patient"
        study = generate_uid()
        for k in range(2 if p % 4 == 0 else 1):
            seed += 1
            image_id = generate_uid()
            folder = root / "dicom-images-train" / study / generate_uid()
            write_dicom(folder / f"{image_id}.dcm", 2000 + seed, patient_id=patient, study_uid=study,
                        sop_uid=image_id, view="AP" if p % 2 else "PA", sex="F" if p % 2 else "M",
                        age=f"{30 + p:03d}Y", bits=16 if p == 1 else 8)
            positive = p % 3 == 0
            if positive:
                rows += [[image_id, f" {100 * m + 5} 7 {100 * m + 40} 3"] for m in range(2 if p % 6 == 0 else 1)]
            else:
                rows.append([image_id, " -1"])
            truth[image_id] = (patient, int(positive), "AP" if p % 2 else "PA", "F" if p % 2 else "M", 30 + p)
    write_csv(root / "train-rle.csv", ["ImageId", " EncodedPixels"], rows)
    return truth


# ---------------------------------------------------------------------------------------------
# Google's four-findings expert labels of ChestX-ray14 (Majkowska et al. 2019)

EXPERT_LABEL_COLUMNS = ["Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass"]


def expert_values(patient: int, follow_up: int) -> list[str]:
    return ["YES" if v else "NO" for v in
            (patient % 5 == 0, patient % 3 == 0, follow_up == 1, patient % 4 == 1)]


def make_nih_expert(root: Path, *, layout: str = "nih", nodule_column: str = "Nodule or mass") -> dict:
    """make_nih's copy plus the expert tables: NIH's metadata columns and the four adjudicated
    columns (YES / NO). Test: the official test patients 21-24; validation: patients 1-12.
    layout "nih" names the files as the NIH download does, "gcs" as Google's bucket does."""
    written = make_nih(root)
    header = [*NIH_HEADER[:-1], *EXPERT_LABEL_COLUMNS[:-1], nodule_column]
    tables = {"test": [], "validation": []}
    for row in written["rows"]:
        patient, follow_up = row[3], row[2]
        role = "test" if patient > 20 else "validation" if patient <= 12 else None
        if role:
            tables[role].append([*row[:-1], *expert_values(patient, follow_up)])
    for role, rows in tables.items():
        name = (f"four_findings_expert_labels_{role}_labels.csv" if layout == "nih"
                else f"four_findings_expert_labels/{role}_labels.csv")
        write_csv(root / name, header, rows)
    return tables


# ---------------------------------------------------------------------------------------------
# The CheXpert test set (2022, released with CheXlocalize)


def make_chexpert_test(root: Path, first_patient: int = 64741, n_patients: int = 5) -> list[list]:
    """test_labels.csv (Path and the 14 labels only, 0 / 1) and test/ images under root: one
    frontal image per patient, and a lateral one for the first."""
    rows = []
    for p in range(first_patient, first_patient + n_patients):
        labels = {"Cardiomegaly": "1", "Pleural Effusion": "0"} if p % 2 else {"No Finding": "1"}
        views = ["view1_frontal.jpg", "view2_lateral.jpg"] if p == first_patient else ["view1_frontal.jpg"]
        for view in views:
            path = f"test/patient{p}/study1/{view}"
            write_image(root / path, p * 3 + len(rows), "JPEG")
            rows.append([path, *[labels.get(c, "0") for c in CHEXPERT_LABELS]])
    write_csv(root / "test_labels.csv", ["Path", *CHEXPERT_LABELS], rows)
    return rows

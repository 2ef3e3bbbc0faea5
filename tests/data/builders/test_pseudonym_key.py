"""The pseudonym key lives outside the data folder (configurable, private, never silently
replaced), and no record of any real-data builder holds a raw patient, study or image id."""

from __future__ import annotations

import os
import pickle
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from fake_data import (
    MIMIC_SUBJECTS,
    build,
    make_chexpert,
    make_mimic,
    make_nih,
    make_nih_expert,
    make_rsna,
    make_siim,
    records,
    rsna_patient,
    text,
    write_csv,
)

from radfm_jax.config.schema import DataConfig
from radfm_jax.data.builders import pseudonyms, registry
from radfm_jax.data.builders.chexpert import Chexpert
from radfm_jax.data.builders.chexpert_plus import ChexpertPlus
from radfm_jax.data.builders.common import PSEUDONYMOUS_SOURCE_NOTE
from radfm_jax.data.builders.mimic_cxr import MimicCxr
from radfm_jax.data.builders.nih_cxr14 import NihCxr14, NihCxr14Expert
from radfm_jax.data.builders.nih_cxr14.builder import PATIENT_KIND as NIH_PATIENT
from radfm_jax.data.builders.rsna_pneumonia import RsnaPneumonia
from radfm_jax.data.builders.siim_acr_pneumothorax import SiimAcrPneumothorax
from radfm_jax.errors import ConfigError

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


@pytest.fixture
def config_home(tmp_path, monkeypatch) -> Path:
    """A fresh $XDG_CONFIG_HOME beside (not inside) the test's data folders."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv(pseudonyms.KEY_ENV, raising=False)
    return home


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- where the key lives ------------------------------------------------------------------------


def test_the_test_suite_never_touches_the_real_config_folder():
    # tests/conftest.py points XDG_CONFIG_HOME at a temporary folder for the whole session.
    assert not pseudonyms.default_key_path().is_relative_to(Path("~/.config").expanduser())
    assert pseudonyms.KEY_ENV not in os.environ


def test_key_is_created_private_under_the_config_folder_once(config_home, tmp_path):
    key = pseudonyms.load_or_create_key(tmp_path / "data")
    path = config_home / "radfm_jax" / "pseudonym_key"
    assert pseudonyms.resolve_key_path() == path
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert path.read_text().strip() == key and len(key) == 64
    # Reused, by every data folder; nothing is written into the data folder.
    assert pseudonyms.load_or_create_key(tmp_path / "data") == key
    assert pseudonyms.load_or_create_key(tmp_path / "other") == key
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
    assert [p.name for p in path.parent.iterdir()] == ["pseudonym_key"]  # no temporary file left


def test_default_is_home_config_when_xdg_is_unset_or_relative(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for value in (None, "relative/config"):
        if value is None:
            monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CONFIG_HOME", value)
        assert pseudonyms.default_key_path() == tmp_path / ".config" / "radfm_jax" / "pseudonym_key"


def test_environment_and_config_choose_the_key_file(config_home, tmp_path, monkeypatch):
    from_env = tmp_path / "keys" / "env_key"
    monkeypatch.setenv(pseudonyms.KEY_ENV, str(from_env))
    env_key = pseudonyms.load_or_create_key(tmp_path / "data")
    assert from_env.read_text().strip() == env_key and _mode(from_env) == 0o600
    from_config = tmp_path / "keys" / "config_key"  # data.pseudonym_key wins over the environment
    config_key = pseudonyms.load_or_create_key(tmp_path / "data", str(from_config))
    assert from_config.read_text().strip() == config_key != env_key
    assert not (config_home / "radfm_jax").exists()


def test_prepare_dataset_uses_data_pseudonym_key(nih_dir, config_home, tmp_path):
    key_file = tmp_path / "secrets" / "nih_key"
    data_cfg = DataConfig(name="nih_cxr14", manual_dir=str(nih_dir), image_size=32,
                          pseudonym_key=str(key_file))
    builder = registry.prepare_dataset(data_cfg, tmp_path / "data")
    assert _mode(key_file) == 0o600 and not (config_home / "radfm_jax").exists()
    ids = pseudonyms.Pseudonymizer(key_file.read_text().strip())
    patients = {text(r["patient_id"]) for rs in records(builder).values() for r in rs}
    assert ids(NIH_PATIENT, "1") in patients
    # TFDS re-creates builders from their pickled arguments: the key file goes with them.
    assert pickle.loads(pickle.dumps(builder))._pseudonym_key == str(key_file)


# -- what is refused ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_a_key_others_can_read_or_write_is_refused(config_home, tmp_path, mode):
    pseudonyms.load_or_create_key(tmp_path / "data")
    path = pseudonyms.resolve_key_path()
    path.chmod(mode)
    with pytest.raises(ConfigError, match=rf"chmod 600 {path}") as err:
        pseudonyms.load_or_create_key(tmp_path / "data")
    assert "\n" not in str(err.value) and f"{mode:03o}" in str(err.value)
    path.chmod(0o600)
    pseudonyms.load_or_create_key(tmp_path / "data")


def test_an_empty_key_is_refused_not_replaced(config_home, tmp_path):
    path = pseudonyms.resolve_key_path()
    path.parent.mkdir(parents=True)
    path.write_text("  \n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="is empty"):
        pseudonyms.load_or_create_key(tmp_path / "data")
    assert path.read_text() == "  \n"


def test_a_key_inside_the_data_folder_is_refused(config_home, tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv(pseudonyms.KEY_ENV, str(data / "keys" / "k"))
    with pytest.raises(ConfigError, match="inside the data folder"):
        pseudonyms.load_or_create_key(data)
    assert not (data / "keys" / "k").exists()
    # Also when a link makes the data folder another name of the key's folder.
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    monkeypatch.setenv(pseudonyms.KEY_ENV, str(tmp_path / "real" / "k"))
    with pytest.raises(ConfigError, match="inside the data folder"):
        pseudonyms.load_or_create_key(tmp_path / "alias")


# -- the key older builds left in the data folder -----------------------------------------------


def _legacy(data: Path, salt: str = "ab" * 32) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    path = data / pseudonyms.LEGACY_SALT_FILENAME
    path.write_text(salt + "\n")
    path.chmod(0o600)
    return path


def test_an_old_key_in_the_data_folder_is_never_silently_replaced(config_home, tmp_path, nih_dir):
    data = tmp_path / "data"
    old = _legacy(data)
    key_path = pseudonyms.resolve_key_path()
    with pytest.raises(ConfigError) as err:
        build(NihCxr14, nih_dir, data)
    message = str(err.value)
    assert f"mv {old} {key_path}" in message and "chmod 600" in message and "\n" not in message
    assert not key_path.exists() and old.exists()  # nothing created, nothing moved
    # The fix it names keeps the old pseudonyms.
    key_path.parent.mkdir(mode=0o700, parents=True)
    shutil.move(old, key_path)
    recs = records(build(NihCxr14, nih_dir, data))
    patients = {text(r["patient_id"]) for rs in recs.values() for r in rs}
    assert pseudonyms.Pseudonymizer("ab" * 32)(NIH_PATIENT, "1") in patients


def test_an_old_key_left_beside_the_new_one_is_refused(config_home, tmp_path):
    data = tmp_path / "data"
    key = pseudonyms.load_or_create_key(tmp_path / "elsewhere")
    old = _legacy(data, key)  # a copy of the key
    with pytest.raises(ConfigError, match=rf"delete it: rm {old}"):
        pseudonyms.load_or_create_key(data)
    old.write_text("cd" * 32)  # another key: which one to keep is the user's call
    with pytest.raises(ConfigError, match="differs") as err:
        pseudonyms.load_or_create_key(data)
    assert f"mv {old}" in str(err.value) and f"rm {old}" in str(err.value)
    old.unlink()
    assert pseudonyms.load_or_create_key(data) == key


# -- pseudonymous source paths ------------------------------------------------------------------


def test_source_paths_keep_layout_folders_and_hide_every_id():
    ids = pseudonyms.Pseudonymizer("k" * 64)
    mimic = pseudonyms.pseudonymous_source_path(
        "files/p10/p10000032/s50414267/02aa804e-bde0afdd.jpg", ids, ("files",))
    top, *hidden, name = mimic.split("/")
    assert top == "files" and len(hidden) == 3 and name.endswith(".jpg")
    assert all(len(part) == 16 and "1000" not in part for part in [*hidden, name[:-4]])
    siim = pseudonyms.pseudonymous_source_path(
        "dicom-images-train/1.2.276.0.1/1.2.276.0.2/1.2.276.0.7230010.3.1.4.878027.dcm", ids,
        ("dicom-images-train",))
    assert siim.startswith("dicom-images-train/") and siim.endswith(".dcm") and "276" not in siim
    ct = pseudonyms.pseudonymous_source_path("dataset/train/train_1/train_1_a/train_1_a_1.nii.gz", ids,
                                             ("dataset", "train"))
    assert ct.startswith("dataset/train/") and ct.endswith(".nii.gz") and "train_1" not in ct
    # A layout name after an identifying part is hidden too; the same part, the same pseudonym.
    nested = pseudonyms.pseudonymous_source_path("files/p1/files/x.jpg", ids, ("files",))
    assert nested.split("/")[2] != "files"
    assert pseudonyms.pseudonymous_source_path("a/b.png", ids) == "/".join(
        [ids(pseudonyms.SOURCE_PATH_KIND, "a"), ids(pseudonyms.SOURCE_PATH_KIND, "b") + ".png"])


def test_the_key_maps_stored_source_paths_back_to_files(mimic_dir):
    key = "ef" * 32
    relative = f"files/p10/p{MIMIC_SUBJECTS[0]}/s50000000/d00f-{MIMIC_SUBJECTS[0]}.jpg"
    stored = pseudonyms.pseudonymous_source_path(relative, pseudonyms.Pseudonymizer(key), ("files",))
    assert pseudonyms.SourceFiles(mimic_dir, key)(stored) == mimic_dir / relative
    with pytest.raises(FileNotFoundError, match="the key it was built with"):
        pseudonyms.SourceFiles(mimic_dir, "00" * 32)(stored)


# -- no raw id in any record of any real-data builder -------------------------------------------


def _chexpert_plus(root: Path) -> list[str]:
    written = make_chexpert(root / "CheXpert-v1.0-small", n_train_patients=12, n_valid_patients=3)
    rows = []
    for row in written["train"] + written["valid"]:
        relative = row[0].split("/", 1)[1]
        rows.append([relative, relative.replace(".jpg", ".dcm"), row[3], row[4],
                     relative.split("/")[1], 1, "", "Heart size is normal.", "No acute process.", 60,
                     "Female", relative.split("/")[0]])
    write_csv(root / "df_chexpert_plus_240401.csv",
              ["path_to_image", "path_to_dcm", "frontal_lateral", "ap_pa", "deid_patient_id",
               "patient_report_date_order", "report", "section_findings", "section_impression",
               "age", "sex", "split"], rows)
    return [f"patient{p:05d}" for p in range(1, 16)]


def _mimic(root: Path) -> list[str]:
    make_mimic(root)
    return [value for i, subject in enumerate(MIMIC_SUBJECTS) for value in (
        str(subject), str(50000000 + i), f"d{i:02d}f-{subject}", f"d{i:02d}l-{subject}")]


def _chexpert(root: Path) -> list[str]:
    make_chexpert(root)
    return [f"patient{p:05d}" for p in range(1, 35)]


def _nih(root: Path) -> list[str]:
    make_nih(root)
    # An image's name is its patient's id and follow-up number.
    return [f"{p:08d}_{f:03d}" for p in range(1, 25) for f in range(2)] + [f"{p:08d}" for p in range(1, 25)]


def _nih_expert(root: Path) -> list[str]:
    make_nih_expert(root)  # make_nih's copy plus the expert tables
    return [f"{p:08d}_{f:03d}" for p in range(1, 25) for f in range(2)] + [f"{p:08d}" for p in range(1, 25)]


def _rsna(root: Path) -> list[str]:
    make_rsna(root)
    return [rsna_patient(i) for i in range(40)] + [rsna_patient(i).replace("-", "") for i in range(40)]


def _siim(root: Path) -> list[str]:
    import pydicom

    truth = make_siim(root)
    uids = set()
    for path in (root / "dicom-images-train").rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uids |= {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}
    return sorted(uids | {patient for patient, *_ in truth.values()})


def _openi(root: Path) -> list[str]:
    from test_openi import CARDIOMEGALY, FILLER, NORMAL, _write_tree

    _write_tree(root)
    reports = [CARDIOMEGALY, NORMAL, *FILLER]
    return [r["uid"] for r in reports] + [i for r in reports for i in r["images"]] + \
        [i.split("_", 1)[1] for r in reports for i in r["images"]]


def _ct_rate(root: Path) -> list[str]:
    from test_ct_rate import GOOD, _write_first_release

    _write_first_release(root)
    return [*GOOD, *{"_".join(name.split("_")[:2]) for name in GOOD},
            *{"_".join(name.split("_")[:3]) for name in GOOD}]


def _build_openi(manual: Path, data: Path):
    from test_openi import _build, _config

    return _build(manual, data, _config())


def _build_ct_rate(manual: Path, data: Path):
    from test_ct_rate import _build

    return _build(manual, data)


CASES = {
    "mimic_cxr": (_mimic, lambda m, d: build(MimicCxr, m, d, views=())),
    "chexpert": (_chexpert, lambda m, d: build(Chexpert, m, d, views=())),
    "chexpert_plus": (_chexpert_plus, lambda m, d: build(ChexpertPlus, m, d, views=())),
    "nih_cxr14": (_nih, lambda m, d: build(NihCxr14, m, d, views=())),
    "nih_cxr14_expert": (_nih_expert, lambda m, d: build(NihCxr14Expert, m, d, views=())),
    "rsna_pneumonia": (_rsna, lambda m, d: build(RsnaPneumonia, m, d)),
    "siim_acr_pneumothorax": (_siim, lambda m, d: build(SiimAcrPneumothorax, m, d)),
    "openi": (_openi, _build_openi),
    "ct_rate": (_ct_rate, _build_ct_rate),
}


def _texts(value) -> list[str]:
    """The text in a record's field (arrays of numbers hold none)."""
    if isinstance(value, bytes | str):
        return [text(value)]
    array = np.asarray(value)
    if array.dtype.kind in "SUO":
        return [text(v) for v in array.ravel()]
    return []


def test_every_real_data_builder_is_covered():
    assert set(CASES) == set(registry.BUILDERS) - set(registry.SYNTHETIC)


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_record_holds_a_raw_id(name, tmp_path):
    make, build_it = CASES[name]
    manual = tmp_path / "manual"
    raw_ids = make(manual)
    assert raw_ids and all(raw_ids)
    builder = build_it(manual, tmp_path / "data")
    # A version from the pseudonymous release on, so no build written by older code (raw ids in
    # source_path) is reused: the current version is the newest in the notes.
    notes = type(builder).RELEASE_NOTES
    assert PSEUDONYMOUS_SOURCE_NOTE in notes.values(), notes
    assert str(type(builder).VERSION) == max(notes, key=lambda v: tuple(map(int, v.split("."))))
    files = pseudonyms.SourceFiles(manual, pseudonyms.read_key(pseudonyms.resolve_key_path()))
    written = 0
    for split, recs in records(builder).items():
        for record in recs:
            written += 1
            for field, value in record.items():
                for cell in _texts(value):
                    leaked = [raw for raw in raw_ids if raw in cell]
                    assert not leaked, f"{name} {split} record's {field} {cell!r} holds {leaked}"
            # The stored path still leads back to the file, with the key.
            assert files(text(record["source_path"])).is_file()
    assert written > 0


def test_record_order_depends_on_the_key_not_on_raw_ids(nih_dir, tmp_path, monkeypatch):
    # TFDS orders records by a hash of their keys; were those raw ids, anyone holding the data
    # set's public tables could recompute the order and so re-link every record.
    orders = []
    for name in ("a", "b"):
        monkeypatch.setenv(pseudonyms.KEY_ENV, str(tmp_path / "keys" / name))
        builder = build(NihCxr14, nih_dir, tmp_path / f"data_{name}", views=())
        files = pseudonyms.SourceFiles(nih_dir, pseudonyms.read_key(tmp_path / "keys" / name))
        orders.append([files(text(r["source_path"])).name for r in records(builder)["train"]])
    assert sorted(orders[0]) == sorted(orders[1]) and orders[0] != orders[1]

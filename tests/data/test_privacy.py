"""safe_header on real files keeps identifiers out; pseudonyms are keyed and stable."""

import hashlib
import hmac

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword

from radfm_jax.data.privacy import PHI_KEYWORDS, SAFE_KEYWORDS, pseudonymous_id, safe_header
from radfm_jax.errors import ConfigError

FILES = ["RG1_UNCI.dcm", "CT_small.dcm", "MR_small.dcm", "693_UNCI.dcm"]


def _header(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)


def test_keyword_lists_are_real_and_disjoint():
    assert all(tag_for_keyword(k) is not None for k in PHI_KEYWORDS | set(SAFE_KEYWORDS))
    assert not PHI_KEYWORDS & set(SAFE_KEYWORDS)
    assert {"PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
            "InstitutionName", "StudyInstanceUID", "SOPInstanceUID"} <= PHI_KEYWORDS


@pytest.mark.parametrize("name", FILES)
def test_safe_header_holds_no_identifying_value(name):
    ds = _header(name)
    header = safe_header(ds)
    assert not set(header) & PHI_KEYWORDS
    identifying = [str(ds[k].value) for k in PHI_KEYWORDS if k in ds and str(ds[k].value)]
    assert "PatientName" in ds and identifying  # the files do carry PHI to leak
    for value in identifying:
        assert value not in header.values()
    # Patient identifiers and UIDs must not appear even inside another field's text. (Site
    # names may: MR_small's InstitutionName "TOSHIBA" is part of its Manufacturer.)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
                    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = str(ds.get(keyword, ""))
        assert not value or not any(value in text for text in header.values())
    assert header["Modality"] == ds.Modality
    assert header["Rows"] == str(ds.Rows)


def test_safe_header_fields_of_the_chest_radiograph():
    header = safe_header(_header("RG1_UNCI.dcm"))
    assert {k: header[k] for k in ("Modality", "ViewPosition", "BodyPartExamined",
                                   "PatientSex", "PhotometricInterpretation")} == {
        "Modality": "CR", "ViewPosition": "PA", "BodyPartExamined": "CHEST",
        "PatientSex": "F", "PhotometricInterpretation": "MONOCHROME1"}
    ct = safe_header(_header("CT_small.dcm"))
    assert ct["PixelSpacing"] == "0.661468\\0.661468"  # DICOM's multi-value form


def test_allow_list_is_explicit():
    ds = _header("CT_small.dcm")
    assert "PatientName" not in safe_header(ds)
    header = safe_header(ds, allow=["PatientName", "StudyDate"])
    assert header["PatientName"] == str(ds.PatientName)
    assert header["StudyDate"] == ds.StudyDate
    with pytest.raises(ConfigError, match="unknown DICOM keyword 'PatientNme'.*'PatientName'"):
        safe_header(ds, allow=["PatientNme"])
    with pytest.raises(ConfigError, match="sequence or binary"):
        safe_header(ds, allow=["OtherPatientIDsSequence"])


def test_ages_of_ninety_and_over_are_aggregated():
    ds = _header("CT_small.dcm")
    ds.PatientAge = "089Y"
    assert safe_header(ds)["PatientAge"] == "089Y"
    ds.PatientAge = "093Y"
    assert safe_header(ds)["PatientAge"] == "090Y+"


def test_pseudonymous_id_is_keyed_and_stable():
    a = pseudonymous_id("9RG1", salt="site-secret")
    assert a == pseudonymous_id("9RG1", salt="site-secret")
    assert a != pseudonymous_id("9RG1", salt="other-secret")
    assert a != pseudonymous_id("9RG2", salt="site-secret")
    reference = hmac.new(b"site-secret", b"9RG1", hashlib.sha256).hexdigest()
    assert len(a) == 16 and reference.startswith(a)
    with pytest.raises(ConfigError, match="non-empty secret salt"):
        pseudonymous_id("9RG1", salt="")
    with pytest.raises(ConfigError, match="empty identifier"):
        pseudonymous_id("", salt="site-secret")

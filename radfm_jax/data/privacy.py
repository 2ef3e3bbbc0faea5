"""Keep identifying DICOM header fields out of prepared records: a fixed allow-list of
non-identifying fields, and keyed pseudonyms for the identifiers a pipeline must still join on
(patient-level splits need a patient key, not the patient's ID)."""

from __future__ import annotations

import difflib
import hashlib
import hmac
from collections.abc import Sequence

import pydicom
from pydicom.datadict import dictionary_VR, keyword_dict, tag_for_keyword

from radfm_jax.errors import ConfigError

# Keywords that identify a patient, a clinician, a site or a visit, after DICOM PS3.15 Annex E
# (Basic Application Level Confidentiality Profile) and the HIPAA Safe Harbor identifiers:
# names, IDs, dates and times, addresses, UIDs (they embed site roots and link records), device
# serials, and free-text fields that often carry names.
PHI_KEYWORDS: frozenset[str] = frozenset({
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "PatientBirthName",
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress",
    "PatientTelephoneNumbers", "PatientMotherBirthName", "IssuerOfPatientID",
    "MedicalRecordLocator", "PatientInsurancePlanCodeSequence", "PatientComments",
    "AdditionalPatientHistory", "AccessionNumber", "StudyID", "AdmissionID",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "ReferringPhysicianName", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord",
    "RequestingPhysician", "OperatorsName", "DeviceSerialNumber",
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "MediaStorageSOPInstanceUID",
    "FrameOfReferenceUID", "InstanceCreatorUID", "IrradiationEventUID",
    "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate",
    "AcquisitionDateTime", "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime",
    "InstanceCreationTime", "ImageComments", "StudyComments", "RequestAttributesSequence",
})

# What safe_header always returns when present: acquisition and pixel-geometry facts that a
# model or a data-set table needs and that identify no one.
SAFE_KEYWORDS: tuple[str, ...] = (
    "Modality", "SOPClassUID", "ViewPosition", "BodyPartExamined", "ImageLaterality",
    "Laterality", "PatientSex", "PatientAge", "PatientOrientation", "Rows", "Columns",
    "NumberOfFrames", "PixelSpacing", "ImagerPixelSpacing", "SliceThickness",
    "SpacingBetweenSlices", "PhotometricInterpretation", "BitsStored", "PixelRepresentation",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth",
    "VOILUTFunction", "KVP", "ConvolutionKernel", "Manufacturer", "ManufacturerModelName",
)

# VRs whose values are not text: sequences can nest any field (PHI included), binaries are blobs.
_NON_TEXT_VRS = frozenset({"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_ID_HEX_DIGITS = 16  # 64 bits: collisions stay negligible (~3e-8) for a million patients


def safe_header(ds: pydicom.Dataset, allow: Sequence[str] = ()) -> dict[str, str]:
    """The non-identifying header fields of `ds` as {keyword: text}, plus the keywords in
    `allow` (PHI keywords included: allowing one is the caller's explicit decision).

    Multi-valued fields are joined with a backslash, as DICOM writes them. Ages of 90 years or
    more become "090Y+" (HIPAA Safe Harbor aggregates them). Absent or empty fields are left out.
    """
    for keyword in allow:
        _check_allowable(keyword)
    header = {}
    for keyword in dict.fromkeys((*SAFE_KEYWORDS, *allow)):
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        text = "\\".join(str(v) for v in value) if ds[keyword].VM > 1 else str(value)
        header[keyword] = _coarse_age(text) if keyword == "PatientAge" else text
    return header


def pseudonymous_id(value: str, salt: str) -> str:
    """A stable pseudonym of an identifier: HMAC-SHA256 keyed by `salt`, first 16 hex digits.

    The same value and salt always give the same id (so records of one patient stay together);
    without the salt the id cannot be recomputed from a guessed value. Keep the salt secret and
    out of the data set.
    """
    if not salt:
        raise ConfigError("pseudonymous_id needs a non-empty secret salt")
    if not value:
        raise ConfigError(
            "pseudonymous_id got an empty identifier; it would merge every record without one "
            "into a single pseudonym"
        )
    digest = hmac.new(salt.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:_ID_HEX_DIGITS]


def _check_allowable(keyword: str) -> None:
    tag = tag_for_keyword(keyword)
    if tag is None:
        nearest = difflib.get_close_matches(keyword, keyword_dict, n=1)
        hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
        raise ConfigError(f"unknown DICOM keyword {keyword!r} in allow{hint}")
    if dictionary_VR(tag) in _NON_TEXT_VRS:
        raise ConfigError(
            f"{keyword} is a sequence or binary field ({dictionary_VR(tag)}); safe_header "
            "only copies text fields"
        )


def _coarse_age(age: str) -> str:
    if age.endswith("Y") and age[:-1].isdigit() and int(age[:-1]) >= 90:
        return "090Y+"
    return age

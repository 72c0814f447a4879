"""DX DICOM files shaped like MIMIC-CXR's, and the view strings they share with the metadata table.

`describe_view` is the one source of the strings that sit both inside a DICOM file and in the JPG
release's metadata CSV (PerformedProcedureStepDescription, ViewCodeSequence_CodeMeaning,
ProcedureCodeSequence_CodeMeaning, PatientOrientationCodeSequence_CodeMeaning). The demo
generator's CSV writer calls it with the same view and portable flag it passes to
`write_dx_dicom`, so the table and the files cannot disagree. It is a pure function rather than a
reader of finished files because the table is written from the same in-memory records.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

DIGITAL_XRAY_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
PHOTOMETRIC_INTERPRETATIONS = ("MONOCHROME1", "MONOCHROME2")
# Typical detector pitch of MIMIC-CXR's DX images, in mm.
PIXEL_SPACING_MM = 0.139

# Fixed, so every run names the same UIDs for the same seed and identifiers.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/cpo-pipeline/demo/dicom")


def _name_hash(*parts: object) -> int:
    """A 128-bit integer fixed by the parts: the integer form of a name-based (SHA-1) UUID."""
    return uuid.uuid5(_UID_NAMESPACE, "/".join(map(str, parts))).int


def _uid(*parts: object) -> UID:
    """A `2.25.` UID, the root ISO/IEC 9834-8 gives UUID-derived integers."""
    return UID(f"2.25.{_name_hash(*parts)}")


IMPLEMENTATION_CLASS_UID = _uid("implementation", "cpo-pipeline demo DICOM writer")
IMPLEMENTATION_VERSION_NAME = "CPO_DEMO_1"


@dataclass(frozen=True)
class Code:
    """One coded entry: (0008,0100) Code Value, (0008,0102) Designator, (0008,0104) Meaning."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class ViewDescription:
    """Everything a view and setting determine, as written to the DICOM header and metadata CSV."""

    view_position: str  # (0018,5101) View Position
    portable: bool
    procedure: Code  # (0008,1032) Procedure Code Sequence; meaning is also the step description
    view: Code  # (0054,0220) View Code Sequence, DICOM CID 4010
    patient_orientation: Code  # (0054,0410) Patient Orientation Code Sequence, DICOM CID 19
    orientation_axes: tuple[str, str]  # (0020,0020) Patient Orientation: row, column directions

    @property
    def procedure_description(self) -> str:
        """(0040,0254) Performed Procedure Step Description, e.g. "CHEST (PA AND LAT)"."""
        return self.procedure.meaning


_VIEW_CODES = {
    "PA": Code("R-10214", "SRT", "postero-anterior"),
    "AP": Code("R-10206", "SRT", "antero-posterior"),
    "LATERAL": Code("R-102CD", "SRT", "lateral"),
    "LL": Code("R-10236", "SRT", "left lateral"),
}
# Frontal films show the patient's left on the image right; laterals face the image left.
_ORIENTATION_AXES = {"PA": ("L", "F"), "AP": ("L", "F"), "LATERAL": ("P", "F"), "LL": ("P", "F")}
# Procedure codes are local to each hospital; "99" marks a private coding scheme.
_DEPARTMENT_PROCEDURE = Code("CXR2V", "99CPO", "CHEST (PA AND LAT)")
_PORTABLE_PROCEDURE = Code("CXRPORT", "99CPO", "CHEST (PORTABLE AP)")
_ERECT = Code("F-10440", "SRT", "Erect")
_RECUMBENT = Code("F-10450", "SRT", "Recumbent")
_DEIDENTIFICATION_CODES = (
    Code("113100", "DCM", "Basic Application Confidentiality Profile"),
    Code("113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option"),
)


def describe_view(view_position: str, portable: bool | None = None) -> ViewDescription:
    """The procedure, view code and patient orientation of one image of a chest study.

    `portable` defaults to True exactly for AP, as in MIMIC-CXR where AP films are almost all
    bedside portables taken recumbent and PA/lateral films come from the department, erect.
    """
    if view_position not in _VIEW_CODES:
        raise ValueError(f"view position {view_position!r}: expected one of {sorted(_VIEW_CODES)}")
    portable = view_position == "AP" if portable is None else portable
    return ViewDescription(
        view_position=view_position,
        portable=portable,
        procedure=_PORTABLE_PROCEDURE if portable else _DEPARTMENT_PROCEDURE,
        view=_VIEW_CODES[view_position],
        patient_orientation=_RECUMBENT if portable else _ERECT,
        orientation_axes=_ORIENTATION_AXES[view_position],
    )


def write_dx_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    subject_id: int,
    study_id: int,
    dicom_id: str,
    view_position: str,
    study_date: str,
    study_time: str,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    uid_seed: int | str,
    portable: bool | None = None,
) -> None:
    """Write one de-identified DX chest image as a DICOM Part-10 file, Explicit VR Little Endian.

    `pixels` are uint16 with bright = dense (as `render_chest_phantom` draws them); MONOCHROME1
    files store them inverted (2**bits_stored - 1 - value), so a reader that inverts
    MONOCHROME1 recovers them. UIDs derive from `uid_seed` and the identifiers alone: rewriting a
    file reproduces it, and images of one study share its Study Instance UID. Parent folders are
    created. PatientSex is drawn from the seed and subject, so it is stable per patient.
    """
    _check_image(path, pixels, photometric, bits_stored)
    _check_date_time(path, study_date, study_time)
    view = describe_view(view_position, portable)
    top = 2**bits_stored - 1
    stored = top - pixels if photometric == "MONOCHROME1" else pixels

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = DIGITAL_XRAY_FOR_PRESENTATION
    ds.SOPInstanceUID = _uid(uid_seed, "instance", subject_id, study_id, dicom_id)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = study_time
    ds.AccessionNumber = "___"
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "cpo-pipeline"
    ds.ManufacturerModelName = "synthetic chest phantom"
    ds.ReferringPhysicianName = "___"
    ds.PerformedProcedureStepDescription = view.procedure_description
    ds.ProcedureCodeSequence = Sequence([_code_item(view.procedure)])
    ds.PatientName = "___"
    ds.PatientID = str(subject_id)
    ds.PatientBirthDate = ""
    ds.PatientSex = "MF"[_name_hash(uid_seed, "sex", subject_id) % 2]
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Synthetic image; identifiers replaced as in MIMIC-CXR"
    ds.DeidentificationMethodCodeSequence = Sequence(
        [_code_item(code) for code in _DEIDENTIFICATION_CODES]
    )
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view.view_position
    ds.ViewCodeSequence = Sequence([_code_item(view.view)])
    ds.PatientOrientationCodeSequence = Sequence([_code_item(view.patient_orientation)])
    ds.StudyInstanceUID = _uid(uid_seed, "study", subject_id, study_id)
    ds.SeriesInstanceUID = _uid(uid_seed, "series", subject_id, study_id, dicom_id)
    ds.StudyID = "___"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = list(view.orientation_axes)
    ds.ImagerPixelSpacing = ds.PixelSpacing = [PIXEL_SPACING_MM, PIXEL_SPACING_MM]
    ds.set_pixel_data(stored, photometric, bits_stored, generate_instance_uid=False)
    ds.BurnedInAnnotation = "NO"
    # (0028,1040-1041): log exposure; with MONOCHROME1's inversion, low values are the dense ones.
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1 if photometric == "MONOCHROME1" else -1
    low, high = int(stored.min()), int(stored.max())
    ds.WindowCenter = (low + high) / 2
    ds.WindowWidth = max(high - low, 1)
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME

    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item


def _check_image(path: Path, pixels: np.ndarray, photometric: str, bits_stored: int) -> None:
    if photometric not in PHOTOMETRIC_INTERPRETATIONS:
        raise ValueError(
            f"{path}: photometric {photometric!r}, expected {PHOTOMETRIC_INTERPRETATIONS}"
        )
    if not 12 <= bits_stored <= 16:
        raise ValueError(f"{path}: bits_stored {bits_stored}, expected 12..16")
    if pixels.ndim != 2 or pixels.dtype != np.uint16:
        raise ValueError(
            f"{path}: pixels are {pixels.dtype} with shape {pixels.shape}, expected 2-D uint16"
        )
    if pixels.size and int(pixels.max()) > 2**bits_stored - 1:
        raise ValueError(
            f"{path}: pixel value {int(pixels.max())} does not fit bits_stored={bits_stored} "
            f"(max {2**bits_stored - 1})"
        )


def _check_date_time(path: Path, study_date: str, study_time: str) -> None:
    try:
        year = datetime.strptime(study_date, "%Y%m%d").year
    except ValueError:
        year = None
    if year is None or len(study_date) != 8 or not 2100 <= year <= 2200:
        raise ValueError(f"{path}: study_date {study_date!r}, expected YYYYMMDD in 2100-2200")
    if not re.fullmatch(r"([01]\d|2[0-3])[0-5]\d[0-5]\d(\.\d{1,6})?", study_time):
        raise ValueError(f"{path}: study_time {study_time!r}, expected HHMMSS or HHMMSS.ffffff")

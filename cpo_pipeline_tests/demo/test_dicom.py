"""DX DICOM files like MIMIC-CXR's: read back with pydicom, header by header and pixel by pixel."""

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from cpo_pipeline.demo.dicom import describe_view, write_dx_dicom
from cpo_pipeline.demo.phantom import render_chest_phantom

SUBJECT_ID = 10000032
STUDY_ID = 50414267
DICOM_ID = "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"


def phantom(size=(96, 80), bits_stored=12, view="PA"):
    return render_chest_phantom(
        {"Support Devices": 1.0}, view, size, np.random.default_rng(0), bits_stored=bits_stored
    )


def write(path, pixels=None, **overrides):
    """Write a file with plausible identifiers, any of them overridden; return what reads back."""
    arguments = {
        "subject_id": SUBJECT_ID,
        "study_id": STUDY_ID,
        "dicom_id": DICOM_ID,
        "view_position": "PA",
        "study_date": "21800506",
        "study_time": "213014.531",
        "uid_seed": 0,
    } | overrides
    write_dx_dicom(path, phantom() if pixels is None else pixels, **arguments)
    return pydicom.dcmread(path)


def test_file_is_a_dx_for_presentation_part_10_file_in_explicit_little_endian(tmp_path):
    ds = write(tmp_path / "image.dcm")

    assert ds.preamble == b"\0" * 128
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.Modality == "DX"
    assert ds.PresentationIntentType == "FOR PRESENTATION"


def test_every_uid_is_under_the_uuid_root_and_a_valid_length(tmp_path):
    ds = write(tmp_path / "image.dcm")
    uids = [
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        ds.file_meta.ImplementationClassUID,
    ]

    for uid in uids:
        assert uid.startswith("2.25.")
        assert int(uid.removeprefix("2.25.")) < 2**128
        assert len(uid) <= 64
    assert len(set(uids)) == 4


def test_same_seed_and_ids_give_the_same_uids(tmp_path):
    first = write(tmp_path / "first.dcm")
    again = write(tmp_path / "again.dcm")

    assert (first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID) == (
        again.StudyInstanceUID,
        again.SeriesInstanceUID,
        again.SOPInstanceUID,
    )


def test_another_seed_gives_other_uids(tmp_path):
    first = write(tmp_path / "first.dcm", uid_seed=0)
    other = write(tmp_path / "other.dcm", uid_seed="another run")

    assert first.StudyInstanceUID != other.StudyInstanceUID
    assert first.SOPInstanceUID != other.SOPInstanceUID


def test_images_of_one_study_share_its_study_uid_but_not_series_or_instance(tmp_path):
    frontal = write(tmp_path / "frontal.dcm")
    lateral = write(
        tmp_path / "lateral.dcm",
        dicom_id="174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962",
        view_position="LATERAL",
    )

    assert frontal.StudyInstanceUID == lateral.StudyInstanceUID
    assert frontal.SeriesInstanceUID != lateral.SeriesInstanceUID
    assert frontal.SOPInstanceUID != lateral.SOPInstanceUID


def test_monochrome2_stores_the_pixels_as_given(tmp_path):
    pixels = phantom()

    ds = write(tmp_path / "image.dcm", pixels, photometric="MONOCHROME2")

    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert ds.PresentationLUTShape == "IDENTITY"
    assert np.array_equal(ds.pixel_array, pixels)


def test_monochrome1_stores_the_inverse_so_inverting_recovers_the_pixels(tmp_path):
    pixels = phantom()

    ds = write(tmp_path / "image.dcm", pixels, photometric="MONOCHROME1")

    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert ds.PresentationLUTShape == "INVERSE"
    assert np.array_equal(4095 - ds.pixel_array, pixels)


@pytest.mark.parametrize("bits_stored", [12, 15, 16])
def test_pixel_module_declares_16_bits_allocated_and_the_bits_stored(tmp_path, bits_stored):
    ds = write(tmp_path / "image.dcm", phantom(bits_stored=bits_stored), bits_stored=bits_stored)

    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, bits_stored, bits_stored - 1)
    assert (ds.PixelRepresentation, ds.SamplesPerPixel) == (0, 1)
    assert (ds.Rows, ds.Columns) == (96, 80)


def test_patient_and_study_tags_are_deidentified_like_mimic(tmp_path):
    ds = write(tmp_path / "image.dcm")

    assert ds.PatientID == "10000032"
    assert ds.PatientName == "___"
    assert ds.StudyID == "___"
    assert ds.AccessionNumber == "___"
    assert ds.PatientSex in ("F", "M")
    assert ds.PatientIdentityRemoved == "YES"
    assert [item.CodeValue for item in ds.DeidentificationMethodCodeSequence] == [
        "113100",
        "113107",
    ]
    assert (ds.StudyDate, ds.StudyTime) == ("21800506", "213014.531")


def test_patient_sex_is_stable_for_a_patient_across_studies(tmp_path):
    sexes = {write(tmp_path / f"{study}.dcm", study_id=study).PatientSex for study in range(5)}

    assert len(sexes) == 1


def test_acquisition_tags_describe_a_chest_film(tmp_path):
    ds = write(tmp_path / "image.dcm")

    assert ds.BodyPartExamined == "CHEST"
    assert ds.ViewPosition == "PA"
    assert ds.PatientOrientation == ["L", "F"]
    assert [float(mm) for mm in ds.ImagerPixelSpacing] == [0.139, 0.139]
    assert [float(mm) for mm in ds.PixelSpacing] == [0.139, 0.139]
    assert (float(ds.RescaleIntercept), float(ds.RescaleSlope)) == (0.0, 1.0)


def test_window_covers_the_stored_values(tmp_path):
    pixels = phantom()

    ds = write(tmp_path / "image.dcm", pixels)

    assert float(ds.WindowCenter) == (int(pixels.min()) + int(pixels.max())) / 2
    assert float(ds.WindowWidth) == int(pixels.max()) - int(pixels.min())


@pytest.mark.parametrize(
    ("view_position", "portable", "procedure", "view_meaning", "orientation"),
    [
        ("PA", False, "CHEST (PA AND LAT)", "postero-anterior", "Erect"),
        ("LATERAL", False, "CHEST (PA AND LAT)", "lateral", "Erect"),
        ("LL", False, "CHEST (PA AND LAT)", "left lateral", "Erect"),
        ("AP", True, "CHEST (PORTABLE AP)", "antero-posterior", "Recumbent"),
    ],
)
def test_coded_sequences_match_the_view_description_the_metadata_table_uses(
    tmp_path, view_position, portable, procedure, view_meaning, orientation
):
    ds = write(tmp_path / "image.dcm", view_position=view_position)
    described = describe_view(view_position)

    assert described.portable is portable
    assert ds.PerformedProcedureStepDescription == described.procedure_description == procedure
    assert ds.ProcedureCodeSequence[0].CodeMeaning == procedure
    assert ds.ViewCodeSequence[0].CodeMeaning == described.view.meaning == view_meaning
    assert ds.PatientOrientationCodeSequence[0].CodeMeaning == orientation


def test_view_codes_are_the_dicom_dx_view_codes():
    assert describe_view("PA").view.value == "R-10214"
    assert describe_view("AP").view.value == "R-10206"
    assert describe_view("LATERAL").view.value == "R-102CD"
    assert {describe_view(view).view.scheme for view in ("PA", "AP", "LATERAL", "LL")} == {"SRT"}


def test_an_ap_film_taken_in_the_department_is_not_portable(tmp_path):
    ds = write(tmp_path / "image.dcm", view_position="AP", portable=False)

    assert ds.PerformedProcedureStepDescription == "CHEST (PA AND LAT)"
    assert ds.PatientOrientationCodeSequence[0].CodeMeaning == "Erect"


def test_lateral_films_are_oriented_posterior_and_feet(tmp_path):
    assert write(tmp_path / "image.dcm", view_position="LL").PatientOrientation == ["P", "F"]


def test_missing_parent_folders_are_created(tmp_path):
    path = tmp_path / "files" / "p10" / "p10000032" / "s50414267" / f"{DICOM_ID}.dcm"

    write(path)

    assert path.is_file()


def test_pixels_too_large_for_bits_stored_are_rejected_naming_the_file(tmp_path):
    pixels = np.full((8, 8), 5000, dtype=np.uint16)

    with pytest.raises(ValueError, match=r"image\.dcm.*5000.*bits_stored=12"):
        write(tmp_path / "image.dcm", pixels)


def test_pixels_that_are_not_2d_uint16_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="expected 2-D uint16"):
        write(tmp_path / "image.dcm", np.zeros((8, 8), dtype=np.float32))


@pytest.mark.parametrize("study_date", ["20230506", "2180-05-06", "21801306"])
def test_study_date_must_be_a_shifted_yyyymmdd(tmp_path, study_date):
    with pytest.raises(ValueError, match="study_date"):
        write(tmp_path / "image.dcm", study_date=study_date)


def test_study_time_must_be_dicom_hhmmss(tmp_path):
    with pytest.raises(ValueError, match="study_time"):
        write(tmp_path / "image.dcm", study_time="80556.875")


def test_unknown_view_position_is_rejected():
    with pytest.raises(ValueError, match="XTABLE LATERAL"):
        describe_view("XTABLE LATERAL")


def test_unknown_photometric_interpretation_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="RGB"):
        write(tmp_path / "image.dcm", photometric="RGB")


def test_full_size_16_bit_radiograph_round_trips(tmp_path):
    pixels = render_chest_phantom(
        {"Pleural Effusion": 1.0}, "AP", (3000, 2500), np.random.default_rng(1), bits_stored=16
    )

    ds = write(
        tmp_path / "image.dcm",
        pixels,
        view_position="AP",
        bits_stored=16,
        photometric="MONOCHROME1",
    )

    assert (ds.Rows, ds.Columns, ds.BitsStored) == (3000, 2500, 16)
    assert np.array_equal(65535 - ds.pixel_array, pixels)

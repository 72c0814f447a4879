"""One row per study: the chosen frontal image, the patient timeline, the declared columns."""

import math

import pandas as pd

from cpo_pipeline import schemas
from cpo_pipeline.ingestion.studies import join_studies, time_stages
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS

SUBJECT, OTHER_SUBJECT = 10000032, 10000764


def images_frame(rows):
    """Images from (subject, study, dicom, view, date, time) rows."""
    frame = pd.DataFrame(rows, columns=["subject_id", "study_id", "dicom_id", "ViewPosition",
                                        "StudyDate", "StudyTime"])
    return frame.assign(split="train", image_path=frame["dicom_id"] + ".png")


def reports_for(images):
    studies = images["study_id"].unique()
    return pd.DataFrame({"study_id": studies, "findings_text": "Lungs are clear.",
                         "findings": "Lungs are clear.", "impression": None})


def labels_for(studies, **cells):
    rows = [{"subject_id": SUBJECT, "study_id": s, **dict.fromkeys(CHEXPERT_LABELS, math.nan),
             **cells, "label_source": "chexpert"} for s in studies]
    return pd.DataFrame(rows, columns=schemas.CXR_LABELS.names)


def test_the_chosen_image_is_pa_then_ap_then_other_then_lateral_ties_by_dicom_id():
    images = images_frame([
        (SUBJECT, 50000001, "c", "LATERAL", "21800506", "1"),
        (SUBJECT, 50000001, "b", " ap", "21800506", "1"),
        (SUBJECT, 50000001, "d", "PA", "21800506", "1"),
        (SUBJECT, 50000001, "a", "PA", "21800506", "1"),
        (SUBJECT, 50000002, "e", "LL", "21800507", "1"),
        (SUBJECT, 50000002, "f", "LATERAL", "21800507", "1"),
        (SUBJECT, 50000003, "g", "", "21800508", "1"),
        (SUBJECT, 50000003, "h", "LL", "21800508", "1"),
    ])

    studies = join_studies(images, reports_for(images), labels_for([]), n_stages=1)

    assert studies[["study_id", "dicom_id", "lateral_only", "n_images"]].values.tolist() == [
        [50000001, "a", False, 4], [50000002, "e", True, 2], [50000003, "g", False, 2]]
    assert studies["view_position"].tolist()[:2] == ["PA", "LL"]
    assert pd.isna(studies["view_position"].iloc[2])


def test_visits_are_ordered_by_datetime_within_each_patient_undated_last():
    images = images_frame([
        (SUBJECT, 50000003, "a", "PA", "21800506", "80556.875"),
        (SUBJECT, 50000001, "b", "PA", "not a date", "0"),
        (SUBJECT, 50000002, "c", "PA", "21800506", "213014.531"),
        (OTHER_SUBJECT, 50000004, "d", "PA", "21500101", "0"),
    ])

    studies = join_studies(images, reports_for(images), labels_for([]), n_stages=1)

    assert studies[["subject_id", "study_id", "visit_index"]].values.tolist() == [
        [SUBJECT, 50000003, 0], [SUBJECT, 50000002, 1], [SUBJECT, 50000001, 2],
        [OTHER_SUBJECT, 50000004, 0]]
    assert studies["study_datetime"].iloc[0] == pd.Timestamp("2180-05-06 08:05:56.875")
    assert pd.isna(studies["study_datetime"].iloc[2])


def test_study_table_has_the_declared_columns_and_its_labels():
    images = images_frame([(SUBJECT, 50000001, "a", "PA", "21800506", "1")])

    studies = join_studies(images, reports_for(images), labels_for([50000001], Edema=1.0), 1)

    assert list(studies.columns) == schemas.CXR_STUDIES.names
    assert studies.loc[0, "Edema"] == 1.0 and math.isnan(studies.loc[0, "Cardiomegaly"])
    assert studies.loc[0, "findings_source"] == "findings"


def timelines(*visits_per_patient):
    """Studies of patients 1, 2, ... with that many visits each, in visit order."""
    return pd.DataFrame(
        [(patient, visit) for patient, visits in enumerate(visits_per_patient, 1)
         for visit in range(visits)], columns=["subject_id", "visit_index"])


def test_a_patient_s_visits_spread_over_the_stages_in_time_order():
    stages = time_stages(timelines(1, 2, 3, 6), n_stages=3)

    assert stages.tolist() == [1, 0, 2, 0, 1, 2, 0, 0, 1, 1, 2, 2]
    assert stages.dtype == "int32"
    assert time_stages(timelines(1, 2, 3, 6), n_stages=1).tolist() == [0] * 12


def test_adding_patients_leaves_the_earlier_patients_stages_where_they_were():
    earlier = time_stages(timelines(1, 2, 3, 6), n_stages=3)

    grown = time_stages(timelines(1, 2, 3, 6, 1, 1, 1, 4), n_stages=3)

    assert grown.iloc[:len(earlier)].tolist() == earlier.tolist()

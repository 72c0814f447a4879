import pandas as pd

from cpo_pipeline import mimic_layout
from cpo_pipeline.demo.generator import DemoConfig, write_demo_tree
from cpo_pipeline.ingestion.ingest import IngestOptions, ingest
from cpo_pipeline.ingestion.source import MimicSource
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS


def test_radiologist_test_set_labels_replace_the_automatic_ones_for_their_studies(tmp_path):
    root = tmp_path / "mimic"
    write_demo_tree(root, DemoConfig(patients=10, seed=8))
    split = pd.read_csv(root / f"{mimic_layout.SPLIT}.gz")
    test_studies = sorted(split.loc[split["split"] == "test", "study_id"].unique())[:2]
    columns = ["Airspace Opacity" if c == "Lung Opacity" else c for c in CHEXPERT_LABELS]
    rows = [{"study_id": s, **dict.fromkeys(columns, ""), "Edema": "1.0", "Airspace Opacity": "1.0"}
            for s in test_studies]
    pd.DataFrame(rows, columns=["study_id", *columns]).to_csv(
        root / mimic_layout.TEST_SET_LABELED, index=False)

    tables = ingest(MimicSource(root, None, is_demo=False), IngestOptions(workers=1),
                    tmp_path / "store")

    labels = tables.labels.set_index("study_id")
    for study in test_studies:
        assert labels.loc[study, "label_source"] == "radiologist-test-set"
        assert labels.loc[study, "Edema"] == 1.0 and labels.loc[study, "Lung Opacity"] == 1.0
        assert pd.isna(labels.loc[study, "Cardiomegaly"])
        assert labels.loc[study, "subject_id"] == split.loc[split["study_id"] == study,
                                                            "subject_id"].iloc[0]
    assert labels.index.is_unique
    assert (labels.drop(index=test_studies)["label_source"] == "chexpert").all()

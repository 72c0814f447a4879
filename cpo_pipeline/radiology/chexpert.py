"""The CheXpert label set as MIMIC-CXR publishes it: names, values, hierarchy, prevalence."""

# Column order of mimic-cxr-2.0.0-chexpert.csv.gz after subject_id and study_id.
CHEXPERT_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)

NO_FINDING = "No Finding"
# Observations that are not diseases: never a diagnosis, a counterfactual target or a disease node.
NON_DISEASE_OBSERVATIONS: tuple[str, ...] = (NO_FINDING, "Support Devices")
DISEASES: tuple[str, ...] = tuple(
    label for label in CHEXPERT_LABELS if label not in NON_DISEASE_OBSERVATIONS
)

# "Not mentioned" is None in Python, blank in the CSV, null in Parquet.
LABEL_POSITIVE = 1.0
LABEL_NEGATIVE = 0.0
LABEL_UNCERTAIN = -1.0

# Parent -> children. The labeller does not propagate along it (the official one does not either);
# it says which label combinations a consistent report can carry.
HIERARCHY: dict[str, tuple[str, ...]] = {
    "Lung Opacity": ("Edema", "Consolidation", "Pneumonia", "Lung Lesion", "Atelectasis"),
    "Consolidation": ("Pneumonia",),
    "Enlarged Cardiomediastinum": ("Cardiomegaly",),
}

# Share of MIMIC-CXR training studies labelled positive.
TRAIN_PREVALENCE: dict[str, float] = {
    "No Finding": 0.33,
    "Support Devices": 0.29,
    "Pleural Effusion": 0.23,
    "Lung Opacity": 0.22,
    "Atelectasis": 0.20,
    "Cardiomegaly": 0.17,
    "Edema": 0.115,
    "Pneumonia": 0.069,
    "Consolidation": 0.046,
    "Pneumothorax": 0.041,
    "Enlarged Cardiomediastinum": 0.031,
    "Lung Lesion": 0.027,
    "Fracture": 0.016,
    "Pleural Other": 0.008,
}

# Share labelled uncertain. Pneumonia, Edema and Atelectasis are the published MIMIC-CXR figures;
# the others are our own small guesses, not measurements (No Finding is never uncertain).
UNCERTAIN_RATE: dict[str, float] = {
    "Pneumonia": 0.078,
    "Edema": 0.051,
    "Atelectasis": 0.043,
    "Enlarged Cardiomediastinum": 0.04,
    "Cardiomegaly": 0.03,
    "Pleural Effusion": 0.025,
    "Lung Opacity": 0.02,
    "Consolidation": 0.02,
    "Lung Lesion": 0.008,
    "Pneumothorax": 0.005,
    "Fracture": 0.003,
    "Support Devices": 0.003,
    "Pleural Other": 0.002,
}

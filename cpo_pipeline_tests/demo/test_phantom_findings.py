"""The phantom's findings: which random stream each one draws from."""

from cpo_pipeline.demo.phantom_findings import PAINTERS, RESHAPERS


def test_every_finding_draws_from_the_stream_it_always_has():
    # `render_chest_phantom` hands the n-th stream split off the image's generator to the n-th
    # finding here: reordering, or inserting before the end, would repaint every seed's tree.
    assert (*RESHAPERS, *PAINTERS) == (
        "Cardiomegaly",
        "Enlarged Cardiomediastinum",
        "Atelectasis",
        "Consolidation",
        "Edema",
        "Fracture",
        "Lung Lesion",
        "Lung Opacity",
        "Pleural Effusion",
        "Pleural Other",
        "Pneumonia",
        "Pneumothorax",
        "Support Devices",
    )

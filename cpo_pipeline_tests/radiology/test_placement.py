import pytest

from cpo_pipeline.radiology.placement import Placement, placement_of


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("small left apical pneumothorax", Placement("left", "upper", 0.55)),
        ("patchy opacity in the right lower lobe", Placement("right", "lower", None)),
        ("moderate bilateral pleural effusions", Placement("bilateral", None, 0.8)),
        ("severe bibasilar atelectasis", Placement("bilateral", "lower", 1.0)),
        ("plate-like atelectasis in the left mid lung", Placement("left", "middle", None)),
        ("dense retrocardiac consolidation", Placement(None, "lower", None)),
        ("trace right effusion", Placement("right", None, 0.35)),
        ("right greater than left pleural effusions", Placement("bilateral", None, None)),
        ("cardiomegaly", Placement()),
    ],
)
def test_side_zone_and_extent_are_read_from_the_words(text, expected):
    assert placement_of(text) == expected


def test_a_devices_side_is_not_the_findings_side():
    assert placement_of("left chest wall pacemaker with a small effusion").side is None
    assert placement_of("right internal jugular catheter; left lower lobe pneumonia").side == "left"

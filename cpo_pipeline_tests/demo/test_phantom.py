"""The synthetic chest radiograph: its pixels, its determinism, and where each finding shows."""

from functools import cache

import numpy as np
import pytest

from cpo_pipeline.demo.phantom import render_chest_phantom
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS
from cpo_pipeline.radiology.placement import Placement

SIZE = (192, 160)
PAINTED_FINDINGS = tuple(label for label in CHEXPERT_LABELS if label != "No Finding")
DENSITIES = (
    "Atelectasis",
    "Consolidation",
    "Edema",
    "Lung Lesion",
    "Lung Opacity",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Support Devices",
)
SEEDS = (0, 1, 2)
# Findings a report gives a side, painted in the lung (or rib cage) that side names.
SIDED = (
    "Atelectasis",
    "Consolidation",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
)
PLACED_SIZE = (128, 128)  # placement tests compare where changes fall, which small films show


def render(
    findings=None, *, seed=7, view="PA", size=SIZE, bits_stored=12, placements=None
) -> np.ndarray:
    image = render_chest_phantom(
        findings or {},
        view,
        size,
        np.random.default_rng(seed),
        bits_stored=bits_stored,
        placements=placements,
    )
    return image.astype(np.int64)


@cache
def unpainted(seed: int, view: str, size: tuple[int, int]) -> np.ndarray:
    """The patient with no findings, rendered once per seed for the many placement comparisons."""
    image = render(seed=seed, view=view, size=size)
    image.flags.writeable = False
    return image


def placed(finding, placement, *, seed, view="PA", size=PLACED_SIZE) -> np.ndarray:
    """How much a finding placed by `placement` changes each pixel of the same patient's film."""
    image = render({finding: 1.0}, seed=seed, view=view, size=size, placements={finding: placement})
    return np.abs(image - unpainted(seed, view, size))


def image_halves(change: np.ndarray) -> tuple[float, float]:
    """The change's mass in the image-left and the image-right half."""
    left, right = np.split(change, 2, axis=1)
    return float(left.sum()), float(right.sum())


def height_of(change: np.ndarray) -> float:
    """Centre of mass of the change, as a fraction of the image height from the top."""
    rows = np.arange(change.shape[0]) + 0.5
    return float((change.sum(axis=1) * rows).sum() / change.sum() / change.shape[0])


def painted(finding, *, value=1.0, seed=7, view="PA", size=SIZE) -> np.ndarray:
    """What a finding changes: the image with it minus the same patient's image without it."""
    return render({finding: value}, seed=seed, view=view, size=size) - render(
        seed=seed, view=view, size=size
    )


def bright_width(image: np.ndarray, row: int, threshold: float) -> int:
    """Length of the run of pixels brighter than `threshold` through the centre of `row`."""
    bright = image[row] > threshold
    left = right = image.shape[1] // 2
    while left > 0 and bright[left - 1]:
        left -= 1
    while right < image.shape[1] - 1 and bright[right + 1]:
        right += 1
    return right - left + 1


def silhouette_threshold(image: np.ndarray, row: int) -> float:
    """Halfway between the darkest lung pixel and the mediastinum at the centre of `row`."""
    cols = image.shape[1]
    middle = image[row, cols // 8 : cols - cols // 8]
    return (middle.min() + image[row, cols // 2]) / 2


def right_minus_left(image: np.ndarray) -> float:
    """Mean brightness of the chest's outer fifth on the image right minus that on the left."""
    chest = image[int(0.3 * SIZE[0]) : int(0.7 * SIZE[0])]
    strip = SIZE[1] // 5
    return chest[:, -strip:].mean() - chest[:, :strip].mean()


def test_image_is_uint16_of_the_requested_size():
    image = render_chest_phantom({}, "PA", (200, 150), np.random.default_rng(0))

    assert image.shape == (200, 150)
    assert image.dtype == np.uint16


def test_counts_span_most_of_the_12_bit_range_without_exceeding_it():
    image = render()

    assert image.max() <= 4095
    assert image.max() - image.min() > 2000


def test_sixteen_bits_stored_is_the_same_image_on_a_finer_scale():
    twelve = render(bits_stored=12)
    sixteen = render(bits_stored=16)

    assert sixteen.max() > 4095
    assert np.abs(sixteen * (4095 / 65535) - twelve).max() <= 1


def test_same_seed_renders_the_same_image():
    assert np.array_equal(render({"Edema": 1.0}, seed=3), render({"Edema": 1.0}, seed=3))


def test_another_seed_renders_another_patient():
    assert np.abs(render(seed=3) - render(seed=4)).mean() > 50


@pytest.mark.parametrize("value", [0.0, None, float("nan")])
def test_negative_and_unmentioned_labels_paint_nothing(value):
    assert np.array_equal(render(dict.fromkeys(CHEXPERT_LABELS, value)), render())


def test_no_finding_paints_nothing():
    assert np.array_equal(render({"No Finding": 1.0}), render())


@pytest.mark.parametrize("view", ["PA", "AP", "LATERAL"])
@pytest.mark.parametrize("finding", PAINTED_FINDINGS)
def test_every_finding_changes_the_image_in_every_view(finding, view):
    assert np.abs(painted(finding, view=view, size=(128, 112))).max() > 150


@pytest.mark.parametrize("finding", PAINTED_FINDINGS)
def test_uncertain_label_paints_a_fainter_version(finding):
    uncertain = np.abs(painted(finding, value=-1.0)).sum()
    positive = np.abs(painted(finding, value=1.0)).sum()

    assert 0 < uncertain < positive


@pytest.mark.parametrize("finding", DENSITIES)
def test_densities_only_brighten(finding):
    change = painted(finding)

    assert change.min() >= 0
    assert change.max() > 400


@pytest.mark.parametrize("seed", SEEDS)
def test_pleural_effusion_fills_only_the_lung_bases(seed):
    change = painted("Pleural Effusion", seed=seed)
    base = int(0.4 * SIZE[0])

    assert not change[:base].any()
    assert change[base:].max() > 1000


@pytest.mark.parametrize("seed", SEEDS)
def test_edema_hazes_both_lungs_around_the_hila(seed):
    change = painted("Edema", seed=seed)
    image_left, image_right = np.split(change, 2, axis=1)
    hila = change[int(0.3 * SIZE[0]) : int(0.5 * SIZE[0])]

    assert min(image_left.sum(), image_right.sum()) > 0.6 * max(image_left.sum(), image_right.sum())
    assert hila.mean() > 2 * change[int(0.6 * SIZE[0]) :].mean()


@pytest.mark.parametrize("seed", SEEDS)
def test_lung_lesion_is_a_small_round_nodule(seed):
    rows, cols = np.nonzero(painted("Lung Lesion", seed=seed, size=(384, 320)))
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1

    assert len(rows) < 0.01 * 384 * 320
    assert 0.7 < height / width < 1.5  # the lung's edge may trim one side
    assert 0.6 < len(rows) / (height * width) < 0.9  # a disc fills pi/4 of its box


@pytest.mark.parametrize("view", ["PA", "AP"])
@pytest.mark.parametrize("seed", SEEDS)
def test_cardiomegaly_widens_the_heart_silhouette(seed, view):
    normal = render(seed=seed, view=view)
    enlarged = render({"Cardiomegaly": 1.0}, seed=seed, view=view)
    row = int(np.argmax((enlarged != normal).sum(axis=1)))  # the heart's widest change
    threshold = silhouette_threshold(normal, row)

    widening = bright_width(enlarged, row, threshold) - bright_width(normal, row, threshold)

    assert widening > 0.08 * SIZE[1]


@pytest.mark.parametrize("seed", SEEDS)
def test_enlarged_cardiomediastinum_widens_the_upper_mediastinum(seed):
    normal = render(seed=seed)
    widened = render({"Enlarged Cardiomediastinum": 1.0}, seed=seed)
    row = int(0.33 * SIZE[0])  # above the heart, below the lung apices
    threshold = silhouette_threshold(normal, row)

    widening = bright_width(widened, row, threshold) - bright_width(normal, row, threshold)

    assert widening > 0.04 * SIZE[1]


@pytest.mark.parametrize("seed", SEEDS)
def test_pneumothorax_darkens_the_upper_lung_behind_a_thin_pleural_line(seed):
    change = painted("Pneumothorax", seed=seed)

    assert not change[SIZE[0] // 2 :].any()
    assert change.min() < -250
    assert (change < 0).sum() > 2 * (change > 0).sum()  # the line is thinner than the air rim


@pytest.mark.parametrize("seed", SEEDS)
def test_support_devices_add_thin_bright_structures(seed):
    change = painted("Support Devices", seed=seed)

    assert change.max() > 600
    assert 0 < (change > 0).mean() < 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_fracture_cuts_a_small_dark_gap_in_a_rib(seed):
    change = painted("Fracture", seed=seed, size=(384, 320))

    assert change.max() == 0
    assert change.min() < -150
    assert 0 < (change < 0).mean() < 0.003


@pytest.mark.parametrize("seed", SEEDS)
def test_portable_ap_film_is_noisier_than_pa(seed):
    def grain(image):
        abdomen = image[-SIZE[0] // 10 :, SIZE[1] // 4 : -SIZE[1] // 4]
        return np.diff(abdomen, axis=1).std()

    assert grain(render(seed=seed, view="AP")) > grain(render(seed=seed, view="PA"))


@pytest.mark.parametrize("view", ["LATERAL", "LL"])
@pytest.mark.parametrize("seed", SEEDS)
def test_lateral_views_are_denser_on_the_image_right_where_the_spine_is(seed, view):
    assert right_minus_left(render(seed=seed, view=view)) > 300


@pytest.mark.parametrize("view", ["PA", "AP"])
@pytest.mark.parametrize("seed", SEEDS)
def test_frontal_views_are_balanced_left_to_right(seed, view):
    assert abs(right_minus_left(render(seed=seed, view=view))) < 300


def test_unknown_label_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="'Nodule'"):
        render_chest_phantom({"Nodule": 1.0}, "PA", SIZE, np.random.default_rng(0))


def test_label_value_outside_chexpert_codes_is_rejected():
    with pytest.raises(ValueError, match="Edema"):
        render_chest_phantom({"Edema": 0.5}, "PA", SIZE, np.random.default_rng(0))


def test_unsupported_view_is_rejected():
    with pytest.raises(ValueError, match="SWIMMERS"):
        render_chest_phantom({}, "SWIMMERS", SIZE, np.random.default_rng(0))


@pytest.mark.parametrize("bits_stored", [11, 17])
def test_bits_stored_outside_12_to_16_is_rejected(bits_stored):
    with pytest.raises(ValueError, match="bits_stored"):
        render_chest_phantom({}, "PA", SIZE, np.random.default_rng(0), bits_stored=bits_stored)


@pytest.mark.parametrize("bad", [{"Nodule": Placement("left")}, {"Edema": Placement("top")}])
def test_placement_for_an_unknown_label_or_side_is_rejected(bad):
    with pytest.raises(ValueError, match="Nodule|top"):
        render_chest_phantom({}, "PA", SIZE, np.random.default_rng(0), placements=bad)


@pytest.mark.parametrize("view", ["PA", "LATERAL"])
def test_no_placements_or_empty_ones_render_the_image_without_the_argument(view):
    findings = dict.fromkeys(PAINTED_FINDINGS, 1.0)
    without = render(findings, view=view)
    empty = dict.fromkeys(CHEXPERT_LABELS, Placement())

    assert np.array_equal(render(findings, view=view, placements={}), without)
    assert np.array_equal(render(findings, view=view, placements=empty), without)


def test_placement_of_an_absent_finding_paints_nothing():
    placements = {"Pneumothorax": Placement("left", "upper", 1.0)}

    assert np.array_equal(render({"Edema": 1.0}, placements=placements), render({"Edema": 1.0}))


def test_placing_one_finding_leaves_the_others_where_they_were():
    findings = {"Consolidation": 1.0, "Lung Lesion": 1.0, "Support Devices": 1.0}
    placements = {"Consolidation": Placement("left", "lower", 1.0)}
    base = render()
    # Wherever consolidation paints, placed or not, the other findings may be covered by it.
    consolidation = (render({"Consolidation": 1.0}) != base) | (
        render({"Consolidation": 1.0}, placements=placements) != base
    )
    others = render({"Lung Lesion": 1.0, "Support Devices": 1.0}) != base

    with_placement = render(findings, placements=placements)
    without = render(findings)

    assert (others & ~consolidation).sum() > 50  # the comparison below sees the other findings
    assert np.array_equal(with_placement[~consolidation], without[~consolidation])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("finding", SIDED)
def test_sided_finding_paints_the_patients_side_on_a_frontal_film(finding, side, seed):
    left, right = image_halves(placed(finding, Placement(side=side), seed=seed))
    # The patient's right is the image left on a frontal film.
    named, other = (left, right) if side == "right" else (right, left)

    assert named > 0.9 * (named + other)


@pytest.mark.parametrize("finding", ["Pleural Effusion", "Lung Lesion", "Pneumothorax", "Fracture"])
@pytest.mark.parametrize("seed", SEEDS)
def test_bilateral_finding_changes_both_halves_of_a_frontal_film(seed, finding):
    left, right = image_halves(placed(finding, Placement(side="bilateral"), seed=seed))

    assert min(left, right) > 0.15 * (left + right)


@pytest.mark.parametrize("finding", ["Consolidation", "Pleural Effusion", "Fracture"])
def test_side_changes_nothing_on_a_lateral_film(finding):
    """The lateral view superimposes both lungs: a side has nowhere else to go."""
    unplaced = placed(finding, Placement(), seed=0, view="LATERAL")

    for side in ("right", "left", "bilateral"):
        assert np.array_equal(placed(finding, Placement(side), seed=0, view="LATERAL"), unplaced)
    assert unplaced.max() > 150


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("finding", ["Consolidation", "Lung Lesion", "Pleural Other", "Fracture"])
def test_zone_sets_how_high_in_the_lung_the_finding_is(finding, seed):
    upper, middle, lower = (
        height_of(placed(finding, Placement(zone=zone), seed=seed))
        for zone in ("upper", "middle", "lower")
    )

    assert upper < middle < lower
    assert lower - upper > 0.15


@pytest.mark.parametrize("seed", SEEDS)
def test_pneumothorax_stays_apical_and_effusion_basal_whatever_the_zone(seed):
    pneumothorax = placed("Pneumothorax", Placement("right", "lower"), seed=seed)
    effusion = placed("Pleural Effusion", Placement("right", "upper"), seed=seed)
    rows = PLACED_SIZE[0]

    assert not pneumothorax[rows // 2 :].any() and pneumothorax.any()
    assert not effusion[: int(0.4 * rows)].any() and effusion.any()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "finding", ["Pleural Effusion", "Cardiomegaly", "Consolidation", "Lung Lesion", "Pneumothorax"]
)
def test_larger_extent_paints_a_larger_finding(finding, seed):
    small = (placed(finding, Placement(extent=0.55), seed=seed) > 0).sum()
    large = (placed(finding, Placement(extent=1.0), seed=seed) > 0).sum()

    assert large > 1.15 * small > 0


def test_large_effusion_rises_higher_than_a_small_one_in_another_patient():
    """The extent, not the patient's draw, sets the depth of the fluid."""

    def top_row(change):
        return int(np.argmax(change.any(axis=1)))

    for small_seed, large_seed in ((0, 1), (1, 2), (2, 0)):
        small = placed("Pleural Effusion", Placement("right", extent=0.35), seed=small_seed)
        large = placed("Pleural Effusion", Placement("right", extent=1.0), seed=large_seed)

        assert top_row(large) < top_row(small)

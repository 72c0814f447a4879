import re

import numpy as np
import pytest

from cpo_pipeline.demo.reports import (
    REPORT_LAYOUTS,
    ReportParts,
    compose_report,
    labelled_text,
    sample_details,
    sample_labels,
    write_findings,
    write_impression,
    write_report_parts,
)
from cpo_pipeline.radiology.chexpert import CHEXPERT_LABELS, HIERARCHY, TRAIN_PREVALENCE
from cpo_pipeline.radiology.labeller import label_report

SEEDS = range(300)
POS, NEG, UNC = 1.0, 0.0, -1.0


@pytest.fixture(scope="module")
def many_labels() -> list[dict[str, float | None]]:
    rng = np.random.default_rng(2024)
    return [sample_labels(rng) for _ in range(3000)]


def share(label_sets: list[dict[str, float | None]], label: str, value: float) -> float:
    return sum(labels[label] == value for labels in label_sets) / len(label_sets)


def report(seed: int, layout: str) -> tuple[dict[str, float | None], ReportParts, str]:
    rng = np.random.default_rng(seed)
    labels = sample_labels(rng)
    parts = write_report_parts(labels, rng, layout)
    return labels, parts, compose_report(parts, rng)


def flat(text: str) -> str:
    return " ".join(text.split())


# --- labels ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("label", "tolerance"),
    [("Pleural Effusion", 0.03), ("Support Devices", 0.03), ("Lung Opacity", 0.03),
     ("Cardiomegaly", 0.03), ("Pneumonia", 0.015), ("No Finding", 0.03)],
)
def test_positive_prevalence_is_the_published_training_prevalence(many_labels, label, tolerance):
    assert share(many_labels, label, POS) == pytest.approx(TRAIN_PREVALENCE[label], abs=tolerance)


def test_pneumonia_is_uncertain_as_often_as_published(many_labels):
    assert share(many_labels, "Pneumonia", UNC) == pytest.approx(0.078, abs=0.015)


def test_reports_state_absent_findings_explicitly(many_labels):
    assert share(many_labels, "Pneumothorax", NEG) > 0.3


def test_edema_comes_with_effusion_more_often_than_not(many_labels):
    with_edema = [labels for labels in many_labels if labels["Edema"] == POS]
    without_edema = [labels for labels in many_labels if labels["Edema"] != POS]
    assert share(with_edema, "Pleural Effusion", POS) > share(
        without_edema, "Pleural Effusion", POS
    ) + 0.2


def test_no_finding_is_positive_exactly_when_only_devices_are_present(many_labels):
    for labels in many_labels:
        present = [
            label for label in CHEXPERT_LABELS
            if label not in ("No Finding", "Support Devices") and labels[label] in (POS, UNC)
        ]
        assert labels["No Finding"] == (None if present else POS)


def test_no_parent_is_negative_while_a_child_is_present(many_labels):
    for labels in many_labels:
        for parent, children in HIERARCHY.items():
            if any(labels[child] in (POS, UNC) for child in children):
                assert labels[parent] != NEG


def test_pneumonia_or_consolidation_brings_lung_opacity(many_labels):
    for labels in many_labels:
        if POS in (labels["Pneumonia"], labels["Consolidation"]):
            assert labels["Lung Opacity"] == POS


# --- text -----------------------------------------------------------------------------------

def test_findings_read_back_as_the_sampled_labels():
    mismatches = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        labels = sample_labels(rng)
        findings = write_findings(labels, rng)
        if label_report(findings) != labels:
            mismatches.append((seed, findings))
    assert mismatches == []


def test_impression_reads_back_as_the_sampled_labels():
    mismatches = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        labels = sample_labels(rng)
        impression = write_impression(labels, rng)
        if label_report(impression) != labels:
            mismatches.append((seed, impression))
    assert mismatches == []


def test_labelled_text_of_every_layout_reads_back_as_the_sampled_labels():
    mismatches = []
    for seed in SEEDS:
        labels, parts, _ = report(seed, REPORT_LAYOUTS[seed % len(REPORT_LAYOUTS)])
        if label_report(labelled_text(parts)) != labels:
            mismatches.append((seed, parts))
    assert mismatches == []


def rendered_labelled_section(text: str, layout: str) -> str:
    if layout == "findings_only":
        return text.split("\n FINDINGS:")[1]
    if layout == "findings_in_last_paragraph":
        return text.split("\n COMPARISON:")[1].split("\n \n", 1)[1]
    return re.split(r"\n (?:IMPRESSION|IMPRESSON|IMPRESION|IMPESSION):", text)[1]


def test_wrapped_labelled_section_of_every_layout_reads_back_as_the_sampled_labels():
    mismatches = []
    for seed in SEEDS:
        layout = REPORT_LAYOUTS[seed % len(REPORT_LAYOUTS)]
        labels, _, text = report(seed, layout)
        if label_report(rendered_labelled_section(text, layout)) != labels:
            mismatches.append((seed, text))
    assert mismatches == []


def test_impression_repeats_the_side_the_findings_describe():
    labels = dict.fromkeys(CHEXPERT_LABELS) | {"Pneumothorax": POS}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        details = sample_details(labels, rng)
        findings = write_findings(labels, rng, details)
        impression = write_impression(labels, rng, details)
        side, other_side = ("right", "left") if "right" in findings else ("left", "right")
        assert side in impression and other_side not in impression


def test_details_sampled_for_other_labels_are_refused():
    rng = np.random.default_rng(0)
    effusion = dict.fromkeys(CHEXPERT_LABELS) | {"Pleural Effusion": POS}
    pneumothorax = dict.fromkeys(CHEXPERT_LABELS) | {"Pneumothorax": POS}
    with pytest.raises(ValueError, match="sampled for labels"):
        write_findings(pneumothorax, rng, sample_details(effusion, rng))


def test_labels_contradicting_no_finding_are_refused():
    contradictory = dict.fromkeys(CHEXPERT_LABELS) | {"Edema": POS, "No Finding": POS}
    with pytest.raises(ValueError, match="No Finding is 1.0"):
        write_findings(contradictory, np.random.default_rng(0))


# --- whole reports --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", REPORT_LAYOUTS)
def test_every_line_starts_with_one_space(layout):
    _, _, text = report(7, layout)
    assert all(line.startswith(" ") for line in text.splitlines())


@pytest.mark.parametrize("layout", REPORT_LAYOUTS)
def test_lines_are_wrapped_at_78_columns(layout):
    _, _, text = report(11, layout)
    lines = [line for line in text.splitlines() if set(line) != {" ", "_"}]
    assert max(len(line) for line in lines) <= 78


@pytest.mark.parametrize("layout", REPORT_LAYOUTS)
def test_final_report_title_is_centred_above_the_headers(layout):
    _, _, text = report(3, layout)
    lines = text.splitlines()
    title = lines.index(" " * 33 + "FINAL REPORT")
    assert lines[title + 1].startswith(" EXAMINATION:  CHEST (")


def test_standard_layout_has_every_header_and_phi_placeholders():
    _, parts, text = report(5, "standard")
    headers = re.findall(r"^ ([A-Z ]+):", text, flags=re.MULTILINE)
    assert headers == [
        "EXAMINATION", "INDICATION", "TECHNIQUE", "COMPARISON", "FINDINGS", "IMPRESSION",
    ]
    assert " INDICATION:  ___-year-old " in text
    assert flat(parts.findings) in flat(text.split(" FINDINGS:")[1].split(" IMPRESSION:")[0])


def test_impression_only_layout_has_no_findings_header():
    _, parts, text = report(5, "impression_only")
    assert " FINDINGS:" not in text
    assert flat(text.split(" IMPRESSION:")[1]) == flat(parts.impression)


def test_findings_only_layout_has_no_impression_header():
    _, parts, text = report(5, "findings_only")
    assert " IMPRESSION:" not in text
    assert flat(text.split(" FINDINGS:")[1]) == flat(parts.findings)


def test_no_findings_header_layout_puts_findings_after_the_comparison():
    _, parts, text = report(5, "no_findings_header")
    comparison_section = text.split(" COMPARISON:")[1].split(" IMPRESSION:")[0]
    assert " FINDINGS:" not in text
    assert flat(comparison_section.split("\n \n", 1)[1]) == flat(parts.findings)


def test_findings_in_last_paragraph_layout_ends_with_the_findings_under_no_header():
    _, parts, text = report(5, "findings_in_last_paragraph")
    assert " FINDINGS:" not in text and " IMPRESSION:" not in text
    assert flat(text.split("\n \n")[-1]) == flat(parts.findings)


def test_addendum_sits_on_top_above_a_line_of_underscores():
    _, _, text = report(5, "addendum_on_top")
    lines = text.splitlines()
    assert lines[0] == " " * 33 + "FINAL ADDENDUM"
    assert lines[1].startswith(" ADDENDUM:  ")
    rule = lines.index(" " + "_" * 78)
    assert lines[rule + 1] == " " * 33 + "FINAL REPORT"


def test_wet_read_sits_on_top_above_a_line_of_underscores():
    _, parts, text = report(5, "wet_read")
    lines = text.splitlines()
    assert lines[0].startswith(" WET READ: ___ ___ ")
    rule = lines.index(" " + "_" * 78)
    assert flat("\n".join(lines[1:rule])) == flat(parts.impression)


def test_misspelled_layout_misspells_the_impression_header():
    _, _, text = report(5, "misspelled_header")
    assert re.search(r"^ (?:IMPRESSON|IMPRESION|IMPESSION):$", text, flags=re.MULTILINE)
    assert " IMPRESSION:" not in text


def test_labelled_text_follows_the_official_section_preference():
    rng = np.random.default_rng(0)
    labels = sample_labels(rng)
    labelled = {
        layout: labelled_text(write_report_parts(labels, np.random.default_rng(1), layout))
        for layout in REPORT_LAYOUTS
    }
    parts = write_report_parts(labels, np.random.default_rng(1), "standard")
    assert [layout for layout, text in labelled.items() if text == parts.findings] == [
        "findings_only", "findings_in_last_paragraph",
    ]


def test_drawn_layouts_are_labelled_by_impression_about_83_percent_of_the_time():
    rng = np.random.default_rng(0)
    labels = sample_labels(rng)
    layouts = [write_report_parts(labels, rng).layout for _ in range(2000)]
    by_impression = sum(layout not in ("findings_only", "findings_in_last_paragraph")
                        for layout in layouts) / len(layouts)
    assert set(layouts) == set(REPORT_LAYOUTS)
    assert by_impression == pytest.approx(0.83, abs=0.03)


def test_unknown_layout_is_refused_by_name():
    with pytest.raises(ValueError, match="'sideways'"):
        write_report_parts(sample_labels(np.random.default_rng(0)), np.random.default_rng(0),
                           "sideways")


def test_same_seed_gives_the_same_report():
    assert report(42, "standard") == report(42, "standard")


def test_different_seeds_give_different_reports():
    assert report(42, "standard")[2] != report(43, "standard")[2]


def test_a_shift_makes_studies_sicker_and_no_shift_is_the_published_mix():
    def draw(shift):
        rng = np.random.default_rng(7)
        return [sample_labels(rng, shift) for _ in range(3000)]

    calm, sick = draw(0.0), draw(0.8)
    default = np.random.default_rng(7)

    assert [sample_labels(default) for _ in range(3000)] == calm
    assert share(sick, "No Finding", POS) < 0.7 * share(calm, "No Finding", POS)
    for label in ("Edema", "Pleural Effusion"):
        assert share(sick, label, POS) > 1.4 * share(calm, label, POS)

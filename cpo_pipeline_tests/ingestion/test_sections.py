import pytest

from cpo_pipeline.ingestion.sections import (
    ReportSections,
    collapse_whitespace,
    extract_sections,
    normalise_section_name,
    split_sections,
)
from cpo_pipeline_tests.ingestion.report_text import TITLE, mimic_report

SEPARATOR = "_" * 78


STANDARD = mimic_report(
    TITLE,
    "EXAMINATION:  CHEST (PA AND LAT)",
    "",
    "INDICATION:  ___F with new onset ascites  // eval for infection",
    "",
    "TECHNIQUE:  Chest PA and lateral",
    "",
    "COMPARISON:  None.",
    "",
    "FINDINGS: ",
    "",
    "There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral",
    "nodular opacities that most likely represent nipple shadows.",
    "",
    "IMPRESSION: ",
    "",
    "No acute cardiopulmonary process.",
)


def test_standard_report_gives_every_section_with_whitespace_collapsed():
    assert extract_sections(STANDARD) == ReportSections(
        findings=(
            "There is no focal consolidation, pleural effusion or pneumothorax. Bilateral "
            "nodular opacities that most likely represent nipple shadows."
        ),
        impression="No acute cardiopulmonary process.",
        indication="___F with new onset ascites // eval for infection",
        comparison="None.",
        technique="Chest PA and lateral",
        examination="CHEST (PA AND LAT)",
        labelled_section="impression",
    )


def test_labelled_text_is_the_text_of_the_labelled_section():
    assert extract_sections(STANDARD).labelled_text == "No acute cardiopulmonary process."


def test_findings_text_prefers_findings_over_impression():
    assert extract_sections(STANDARD).findings_text.startswith("There is no focal consolidation")


def test_split_sections_keeps_raw_text_in_report_order_with_the_preamble_first():
    text = mimic_report(TITLE, "INDICATION:  Cough.", "", "IMPRESSION:  Clear.")
    assert split_sections(text) == [
        ("preamble", f" {TITLE}"),
        ("indication", "  Cough.\n "),
        ("impression", "  Clear.\n"),
    ]


def test_impression_only_report_labels_the_impression_and_offers_it_as_findings_text():
    sections = extract_sections(
        mimic_report(TITLE, "INDICATION:  Dyspnea.", "", "IMPRESSION:  Mild pulmonary edema.")
    )
    assert (sections.findings, sections.labelled_section, sections.findings_text) == (
        None,
        "impression",
        "Mild pulmonary edema.",
    )


def test_findings_only_report_labels_the_findings():
    sections = extract_sections(
        mimic_report(TITLE, "FINDINGS:  Heart size is normal.", "Lungs are clear.")
    )
    assert (sections.findings, sections.impression, sections.labelled_section) == (
        "Heart size is normal. Lungs are clear.",
        None,
        "findings",
    )


def test_without_findings_or_impression_the_text_after_the_first_blank_line_is_the_last_paragraph():
    sections = extract_sections(
        mimic_report(
            TITLE,
            "INDICATION:  Fever.",
            "",
            "COMPARISON:  ___.",
            "",
            "The lungs are clear.  No effusion.",
            "",
            "Heart size is normal.",
        )
    )
    assert (sections.comparison, sections.last_paragraph, sections.labelled_section) == (
        "___.",
        "The lungs are clear. No effusion. Heart size is normal.",
        "last_paragraph",
    )


def test_last_paragraph_is_the_findings_text_when_nothing_better_exists():
    sections = extract_sections(
        mimic_report(TITLE, "COMPARISON:  ___.", "", "The lungs are clear.")
    )
    assert sections.findings_text == "The lungs are clear."


def test_last_section_without_a_blank_line_has_no_last_paragraph_and_comparison_is_labelled():
    sections = extract_sections(
        mimic_report(TITLE, "COMPARISON:  Since ___, the lungs have cleared.")
    )
    assert (sections.last_paragraph, sections.labelled_section, sections.labelled_text) == (
        None,
        "comparison",
        "Since ___, the lungs have cleared.",
    )


def test_blank_line_right_after_a_header_is_not_a_paragraph_break():
    sections = extract_sections(mimic_report(TITLE, "COMPARISON:", "", "Lungs have cleared."))
    assert (sections.comparison, sections.last_paragraph) == ("Lungs have cleared.", None)


def test_report_with_no_usable_section_has_no_labelled_section():
    sections = extract_sections(mimic_report(TITLE, "HISTORY:  Cough.", "INDICATION:  Cough."))
    assert (sections.labelled_section, sections.labelled_text, sections.findings_text) == (
        None,
        None,
        None,
    )


ADDENDUM_ON_TOP = mimic_report(
    "                               FINAL ADDENDUM",
    "ADDENDUM:  Findings were discussed with Dr. ___ at 3:10 PM.",
    "",
    SEPARATOR,
    TITLE,
    "EXAMINATION:  CHEST (PORTABLE AP)",
    "",
    "FINDINGS:  Endotracheal tube 4 cm above the carina.",
    "",
    "IMPRESSION:  Tube in standard position.",
)


def test_addendum_on_top_is_its_own_section_before_the_final_report():
    assert [name for name, _ in split_sections(ADDENDUM_ON_TOP)] == [
        "preamble",
        "addendum",
        "examination",
        "findings",
        "impression",
    ]


def test_addendum_on_top_leaves_the_final_reports_sections_intact():
    sections = extract_sections(ADDENDUM_ON_TOP)
    assert (sections.findings, sections.impression) == (
        "Endotracheal tube 4 cm above the carina.",
        "Tube in standard position.",
    )


def test_wet_read_on_the_first_line_stays_in_the_preamble_out_of_every_section():
    text = mimic_report(
        "WET READ: ___ ___ 4:10 PM",
        "  Right PICC tip in the low SVC.",
        SEPARATOR,
        TITLE,
        "IMPRESSION:  Right PICC terminates in the low SVC.  No pneumothorax.",
    )
    assert [name for name, _ in split_sections(text)] == ["preamble", "impression"]
    assert (
        extract_sections(text).impression
        == "Right PICC terminates in the low SVC. No pneumothorax."
    )


def test_wet_read_below_the_first_line_is_a_wet_read_section():
    text = "\n" + mimic_report("WET READ: ___ ___ 4:10 PM", "  No pneumothorax.", SEPARATOR)
    assert split_sections(text)[1] == (
        "wet read",
        f" ___ ___ 4:10 PM\n   No pneumothorax.\n {SEPARATOR}\n",
    )


def test_misspelled_impresson_header_is_the_impression():
    sections = extract_sections(mimic_report(TITLE, "IMPRESSON:  No acute process."))
    assert (sections.impression, sections.labelled_section) == ("No acute process.", "impression")


def test_findings_and_impression_header_is_the_impression_not_the_findings():
    sections = extract_sections(
        mimic_report(TITLE, "FINDINGS AND IMPRESSION:  Small left effusion.")
    )
    assert (sections.findings, sections.impression) == (None, "Small left effusion.")


def test_view_header_chest_pa_and_lat_is_the_findings():
    sections = extract_sections(
        mimic_report(TITLE, "CHEST, PA AND LAT:  The lungs are well expanded and clear.")
    )
    assert (sections.findings, sections.labelled_section) == (
        "The lungs are well expanded and clear.",
        "findings",
    )


def test_conclusion_header_is_the_impression():
    sections = extract_sections(
        mimic_report(TITLE, "FINDINGS:  Clear lungs.", "", "CONCLUSION:  Normal chest.")
    )
    assert (sections.impression, sections.labelled_section) == ("Normal chest.", "impression")


def test_empty_findings_is_dropped():
    sections = extract_sections(
        mimic_report(TITLE, "FINDINGS:", "", "IMPRESSION:  No acute process.")
    )
    assert (sections.findings, sections.findings_text) == (None, "No acute process.")


def test_empty_findings_directly_above_the_impression_does_not_swallow_it():
    sections = extract_sections(mimic_report(TITLE, "FINDINGS:", "IMPRESSION:  Clear lungs."))
    assert (sections.findings, sections.impression) == (None, "Clear lungs.")


def test_empty_trailing_findings_is_not_the_last_section_cut_into_a_last_paragraph():
    sections = extract_sections(
        mimic_report(TITLE, "COMPARISON:  None.", "", "The lungs are clear.", "", "FINDINGS:", "")
    )
    assert (sections.comparison, sections.last_paragraph) == ("None.", "The lungs are clear.")


def test_report_without_headers_splits_its_last_paragraph_off_the_title():
    sections = extract_sections(mimic_report(TITLE, "", "Lungs are clear.", "Heart is normal."))
    assert (sections.last_paragraph, sections.labelled_section) == (
        "Lungs are clear. Heart is normal.",
        "last_paragraph",
    )


def test_report_without_headers_or_blank_lines_has_no_sections():
    text = mimic_report(TITLE, "Lungs are clear.")
    assert (split_sections(text), extract_sections(text)) == (
        [("preamble", text)],
        ReportSections(),
    )


def test_empty_text_has_only_an_empty_preamble_and_no_sections():
    assert (split_sections(""), extract_sections("")) == ([("preamble", "")], ReportSections())


def test_non_ascii_characters_are_kept():
    sections = extract_sections(
        mimic_report(TITLE, "FINDINGS:  Nodule 2 × 3 cm – unchanged.", "Naïve read.")
    )
    assert sections.findings == "Nodule 2 × 3 cm – unchanged. Naïve read."


def test_header_like_words_inside_a_line_or_in_lower_case_do_not_start_a_section():
    sections = extract_sections(
        mimic_report(
            TITLE,
            "FINDINGS:  Stable, NO CHANGE SINCE: the prior.",
            "no change since: the prior either.",
        )
    )
    assert (
        sections.findings
        == "Stable, NO CHANGE SINCE: the prior. no change since: the prior either."
    )


def test_colon_without_following_whitespace_does_not_end_a_header():
    assert [name for name, _ in split_sections(mimic_report(TITLE, "AT:10:30 lungs clear."))] == [
        "preamble"
    ]


def test_of_repeated_sections_the_last_one_counts():
    sections = extract_sections(
        mimic_report(TITLE, "IMPRESSION:  Preliminary.", "", "IMPRESSION:  Final.")
    )
    assert sections.impression == "Final."


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("IMPRESSION", "impression"),
        ("CONCLUSIONS", "impression"),
        ("SUMMARY", "impression"),
        ("IMPRESSIONS", "impression"),
        ("IMPRESSION AND RECOMMENDATION", "impression"),
        ("IMRESSION", "impression"),
        ("IMPRESION", "impression"),
        ("FINDING/IMPRESSION", "impression"),
        ("FINDING", "findings"),
        ("FINDNGS", "findings"),
        ("PA AND LATERAL VIEWS OF THE CHEST", "findings"),
        ("PORTABLE AP CHEST", "findings"),
        ("CHEST (PA AND LAT)", "findings"),
        ("CLINICAL HISTORY", "history"),
        ("HISTORY", "history"),
        ("REASON FOR EXAM", "indication"),
        ("REASON FOR EXAMINATION", "indication"),
        ("INDICATIONS", "indication"),
        ("CLINICAL INDICATION", "indication"),
        ("COMPARISONS", "comparison"),
        ("PRIOR", "comparison"),
        ("TECHNIQUE", "technique"),
        ("EXAM", "examination"),
        ("EXAMINATION", "examination"),
        ("   WET READ", "wet read"),
        ("FINAL ADDENDUM", "addendum"),
        ("NOTIFICATION", "notification"),
    ],
)
def test_normalise_section_name_maps_variants_to_canonical_names(raw, canonical):
    assert normalise_section_name(raw) == canonical


def test_collapse_whitespace_joins_lines_with_single_spaces_and_strips_the_ends():
    assert collapse_whitespace("\n  Lungs are\n clear.\t\n ") == "Lungs are clear."

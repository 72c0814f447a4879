"""The rendered corpus the tiny model's vision tower can be pretrained on: what it draws, that its
pixels are what ingestion would store, and that its tower is made once and then only loaded."""

import numpy as np
import pytest
import torch

from cpo_pipeline.radiology.chexpert import NO_FINDING
from cpo_pipeline.training import vision_corpus
from cpo_pipeline.training.tiny_model import TinyModelSpec, build_tiny_model
from cpo_pipeline.training.vision_corpus import (
    FINDING_SHARE,
    LABELS,
    PAINTED,
    plan_corpus,
    pretrained_tower,
    render_corpus,
)


def test_the_plan_is_fixed_by_its_seed_and_a_larger_corpus_extends_a_smaller_one():
    assert plan_corpus(50, seed=3) == plan_corpus(50, seed=3)
    assert plan_corpus(80, seed=3)[:50] == plan_corpus(50, seed=3)
    assert plan_corpus(50, seed=3) != plan_corpus(50, seed=4)
    with pytest.raises(ValueError, match="at least 1 image"):
        plan_corpus(0)


def test_every_finding_is_drawn_near_its_share_and_no_finding_only_without_a_disease():
    plans = plan_corpus(4000)
    for label in PAINTED:
        share = np.mean([label in plan.findings for plan in plans])
        assert abs(share - FINDING_SHARE) < 0.02, label
    assert {plan.view for plan in plans} == {"PA", "AP"}
    for plan in plans:
        diseases = [f for f in plan.findings if f != "Support Devices"]
        assert (NO_FINDING in plan.labels) == (not diseases)
        assert set(plan.labels) <= set(LABELS)


def test_rendered_images_are_what_ingestion_decodes_from_the_dicom(tmp_path):
    from cpo_pipeline.demo.dicom import write_dx_dicom
    from cpo_pipeline.demo.phantom import render_chest_phantom
    from cpo_pipeline.ingestion.dicom_decode import decode_source

    images, label_sets, labels = render_corpus(6, seed=1, workers=2)
    assert labels == LABELS and len(images) == len(label_sets) == 6
    assert [image.size for image in images] == [(128, 128)] * 6
    assert {image.mode for image in images} == {"L"}
    # The same image again, through the project's DICOM writer and reader by hand.
    plan = plan_corpus(6, seed=1)[4]
    pixels = render_chest_phantom({label: 1.0 for label in plan.findings}, plan.view,
                                  (128, 128), np.random.default_rng([0xC0FFEE, 1, 4, 1]))
    path = tmp_path / "again.dcm"
    write_dx_dicom(path, pixels, subject_id=10_000_004, study_id=50_000_004,
                   dicom_id="00000004-00000000-00000000-00000000-00000000",
                   view_position=plan.view, study_date="21500101", study_time="120000",
                   uid_seed="again")
    assert np.array_equal(np.asarray(decode_source(str(path), 128).image),
                          np.asarray(images[4]))
    # Two workers give what one does.
    one, _, _ = render_corpus(6, seed=1, workers=1)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(one, images))


def test_a_corpus_tower_is_made_once_then_loaded_and_the_run_seed_does_not_change_it(
        tmp_path, monkeypatch):
    spec = TinyModelSpec()
    state = torch.get_rng_state()
    made = pretrained_tower(spec, 64, 1, tmp_path / "towers")
    assert torch.equal(torch.get_rng_state(), state)
    assert len(list((tmp_path / "towers").glob("*/tower.safetensors"))) == 1

    def no_rendering(*args, **kwargs):
        raise AssertionError("a cached tower was rendered again")

    monkeypatch.setattr(vision_corpus, "render_corpus", no_rendering)
    loaded = pretrained_tower(spec, 64, 1, tmp_path / "towers")
    assert made.keys() == loaded.keys()
    assert all(torch.equal(made[name], loaded[name]) for name in made)
    # Another corpus size or schedule is another tower.
    with pytest.raises(AssertionError, match="rendered again"):
        pretrained_tower(spec, 65, 1, tmp_path / "towers")

    # Two runs with different seeds start from that tower; their language halves differ.
    models = []
    for seed in (0, 1):
        from dataclasses import replace

        from transformers import AutoModelForImageTextToText

        out = build_tiny_model(["a radiograph", "no finding"], replace(spec, seed=seed),
                               out_dir=tmp_path / f"model-{seed}", vision_tower=loaded)
        models.append(AutoModelForImageTextToText.from_pretrained(out))
    towers = [model.model.vision_tower.state_dict() for model in models]
    assert all(torch.equal(towers[0][name], towers[1][name]) for name in towers[0])
    assert all(torch.equal(towers[0][name], made[name]) for name in made)
    assert not torch.equal(models[0].lm_head.weight, models[1].lm_head.weight)

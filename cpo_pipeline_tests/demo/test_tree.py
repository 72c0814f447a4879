from cpo_pipeline import mimic_layout
from cpo_pipeline.demo.generator import DemoConfig
from cpo_pipeline.demo.tree import ensure_demo_tree


def test_demo_tree_is_created_once_and_then_reused(tmp_path):
    root = tmp_path / "demo"
    ensure_demo_tree(root, DemoConfig(patients=3, seed=1))
    marker_mtime = (root / ".demo-complete.json").stat().st_mtime_ns
    ensure_demo_tree(root, DemoConfig(patients=3, seed=1))

    assert (root / ".demo-complete.json").stat().st_mtime_ns == marker_mtime
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_a_half_written_demo_tree_is_rebuilt(tmp_path):
    root = tmp_path / "demo"
    (root / "files").mkdir(parents=True)
    ensure_demo_tree(root, DemoConfig(patients=3, seed=1))

    assert (root / f"{mimic_layout.RECORD_LIST}.gz").is_file()

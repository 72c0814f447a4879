import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

from cpo_pipeline import mimic_layout
from cpo_pipeline.cli import main


def test_demo_data_writes_a_tree_and_refuses_a_non_empty_folder(tmp_path, capsys):
    out = tmp_path / "mimic"

    assert main(["demo-data", "--out", str(out), "--patients", "3", "--seed", "2"]) == 0
    assert (out / f"{mimic_layout.RECORD_LIST}.gz").is_file()
    assert "3 patients" in capsys.readouterr().out
    assert main(["demo-data", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_scripted_llm_serves_the_openai_protocol_until_interrupted():
    server = subprocess.Popen(
        [sys.executable, "-m", "cpo_pipeline.cli", "scripted-llm", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        server.stdout.readline()
        base_url = re.search(r"CPO_LLM_BASE_URL=(\S+)", server.stdout.readline()).group(1)
        with urllib.request.urlopen(f"{base_url}/models", timeout=10) as response:
            models = json.load(response)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)

    assert models["data"][0]["id"] == "cpo-test-model"
    assert server.returncode == 0, server.stderr.read()

"""``lseg-pacl app``: the web page, served by a real ``lseg-pacl app`` process and driven over HTTP by
``gradio_client``; nothing is downloaded (no telemetry, no version check, local weights only)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lseg_pacl.app.models import Models, find_choices
from lseg_pacl.commands.cli import main
from lseg_pacl.errors import MissingInputError

LABELS = "sky, grass, ball"
START_S = 120  # the server must answer within this


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the app exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the app did not answer within {START_S} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def served(world, tiny_clip_file, tmp_path_factory):
    """(client, checkpoint, a checkpoint deleted after the start, the model overrides, the server's log)."""
    pytest.importorskip("gradio")
    client_module = pytest.importorskip("gradio_client")
    from lseg_pacl.training.runner import train

    root = tmp_path_factory.mktemp("app")
    size = json.loads((world / "manifest.json").read_text())
    summary = train("demo_clip", [
        "logger.wandb.mode=disabled", f"run.root={root / 'runs'}", f"data.synthetic.out={world}",
        f"data.synthetic.n_train={size['n_train']}", f"data.synthetic.n_val={size['n_val']}",
        "data.batch_size=8", "data.val_batch_size=8", "data.num_workers=0", "trainer.max_steps=4",
        "trainer.enable_progress_bar=false",
    ])
    ckpt = Path(summary["run_dir"]) / "checkpoints" / "last.ckpt"
    gone = root / "runs" / "demo_clip" / "deleted-run" / "checkpoints" / "last.ckpt"
    gone.parent.mkdir(parents=True)
    shutil.copy(ckpt, gone)
    models = ["model.clip.name=lseg-tiny-vit", f"model.clip.pretrained={tiny_clip_file}"]
    port, log = free_port(), root / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "GRADIO_TEMP_DIR": str(root / "gradio"), "NO_PROXY": "127.0.0.1,localhost"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lseg_pacl", "app", f"port={port}", f"runs={root / 'runs'}",
             f"synthetic={world}", *models],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(url, proc, log)
        gone.unlink()  # its weights go missing while the page lists it
        client = client_module.Client(url, analytics_enabled=False, verbose=False,
                                      download_files=str(root / "downloads"))
        yield client, ckpt, gone, models, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def segment(client, image, labels, chosen):
    from gradio_client import handle_file

    return client.predict(handle_file(str(image)), labels, chosen, api_name="/segment")


@pytest.mark.slow
def test_two_models_side_by_side_agree_with_predict(served, world, tmp_path):
    client, ckpt, _, models, _ = served
    image = sorted((world / "ADEChallengeData2016" / "images" / "validation").glob("*.jpg"))[0]
    chosen = [str(ckpt), "baseline_clip"]
    result = segment(client, image, LABELS, chosen)
    assert len(result) == 8
    maps = []
    for k, model in enumerate(chosen):
        title, picture, share, png = result[4 * k: 4 * k + 4]
        assert (ckpt.parent.parent.name if k == 0 else "baseline_clip (training-free)") in title
        out = tmp_path / f"predict{k}"
        assert main(["predict", f"ckpt={model}", f"image={image}", f"labels={LABELS}", f"out={out}",
                     *models]) == 0
        with Image.open(png) as got, Image.open(out / f"{image.stem}_labels.png") as expected:
            assert got.mode == expected.mode == "P" and got.size == expected.size
            assert got.getpalette() == expected.getpalette()
            ids = np.asarray(got)
            assert np.array_equal(ids, np.asarray(expected))
        maps.append(ids)
        summary = json.loads((out / f"{image.stem}.json").read_text())
        assert {c["label"]: c["confidence"] for c in share["confidences"]} == summary["share"]
        with Image.open(picture) as shown:  # the overlay with its legend under the (upscaled) picture
            assert shown.size[0] >= ids.shape[1] and shown.size[1] > ids.shape[0]
    assert not np.array_equal(maps[0], maps[1])  # two different models, side by side


@pytest.mark.slow
def test_bad_input_is_a_message_in_the_page(served, tmp_path):
    from gradio_client.exceptions import AppError

    client, ckpt, gone, _, log = served
    image = tmp_path / "ok.png"
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(image)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    huge = tmp_path / "huge.png"
    Image.new("L", (5000, 4000)).save(huge)  # 20 megapixels, a few kilobytes
    cases = [
        (notes, LABELS, [str(ckpt)], "notes.txt is not an image"),
        (fake, LABELS, [str(ckpt)], "fake.png is not an image"),
        (image, " , ", [str(ckpt)], "at least one label"),
        (image, LABELS, [], "Choose one or two models"),
        (huge, LABELS, [str(ckpt)], "at most 16 megapixels"),
        (image, LABELS, [str(gone), str(ckpt)], "neither a checkpoint file nor an experiment"),
    ]
    for picture, labels, chosen, expected in cases:
        with pytest.raises(AppError) as caught:
            segment(client, picture, labels, chosen)
        assert expected in str(caught.value) and "Traceback" not in str(caught.value)
    assert segment(client, image, "sky, grass", [str(ckpt)])[0]  # the server carries on
    assert "Traceback" not in log.read_text()  # user errors are one log line each


def test_choices_are_the_given_model_the_runs_and_the_training_free_rows(tmp_path):
    runs = tmp_path / "runs"
    for run in ("demo/20240101-000000-aaaa/demo_pacl", "demo_clip/20240102-000000-bbbb"):
        (runs / run / "checkpoints").mkdir(parents=True)
        (runs / run / "checkpoints" / "last.ckpt").write_bytes(b"")
    mine = tmp_path / "mine.ckpt"
    mine.write_bytes(b"")
    choices = find_choices(runs, str(mine))
    labels = [c.label for c in choices]
    assert choices[0].value == str(mine)
    assert {"demo/20240101-000000-aaaa/demo_pacl", "demo_clip/20240102-000000-bbbb"} <= set(labels)
    assert "baseline_sclip (training-free)" in labels and not any("demo_clip (" in x for x in labels)
    assert find_choices(tmp_path / "none")[0].value == "baseline_clearclip"
    with pytest.raises(MissingInputError, match="ckpt=nope.ckpt"):
        find_choices(runs, "nope.ckpt")


def test_models_load_once_and_the_least_recent_is_dropped():
    loads = []
    models = Models([], size=2, loader=lambda value, overrides: loads.append(value) or value)
    for value in ("a", "b", "a", "c", "a"):
        with models.use(value) as model:
            assert model == value
    assert loads == ["a", "b", "c"] and models.loaded() == ["c", "a"]


def test_without_gradio_the_command_says_how_to_install_it(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["app"]) == 3
    err = capsys.readouterr().err
    assert "make app" in err and 'pip install -e ".[app]"' in err

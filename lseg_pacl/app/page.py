"""The Gradio page: an image, labels, one or two models; two overlays with legends, each label's share and a
download of each label PNG. Anything the user can fix comes back as a message in the page (``gr.Error``),
never as a traceback; unexpected failures are logged here with theirs and summarised there."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from data_modules.bad_samples import BadSample
from data_modules.images import read_rgb
from lseg_pacl.app.models import Choice, Models
from lseg_pacl.commands.predict import label_shares, palette_png, parse_labels
from lseg_pacl.errors import UserError
from lseg_pacl.evaluation.pictures import overlay

log = logging.getLogger(__name__)
SLOTS = 2  # models side by side
MAX_UPLOAD = "64mb"
KEEP_OUTPUTS_S = 3600  # label PNGs written for downloads are removed after an hour


def message(text: str) -> gr.Error:
    """An error shown in the page; the server's console gets one log line, not a traceback."""
    log.info("page message: %s", text)
    try:
        return gr.Error(text, print_exception=False)
    except TypeError:  # a Gradio without print_exception
        return gr.Error(text)


def picture(**kwargs) -> gr.Image:
    """gr.Image whose upload, when it is not an image, is a message rather than a PIL exception. (The
    instance's preprocess is wrapped: a subclass would make Gradio write a .pyi stub next to this file.)"""
    image = gr.Image(**kwargs)
    plain = image.preprocess

    def preprocess(payload):
        try:
            return plain(payload)
        except gr.Error:
            raise
        except Image.DecompressionBombError:
            raise message("this image is far too large: resize it first") from None
        except Exception as exc:  # PIL's UnidentifiedImageError, a truncated header, ...
            name = getattr(payload, "orig_name", None) or "the upload"
            raise message(f"{name} is not an image this page can read ({type(exc).__name__})") from None

    image.preprocess = preprocess
    return image


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")[:60] or "model"


class App:
    """The page's state: its models, the choices' labels, the limits and where downloads are written."""

    def __init__(self, choices: list[Choice], models: Models, max_pixels: int, out: Path):
        self.choices = choices
        self.labels = {c.value: c.label for c in choices}
        self.models = models
        self.max_pixels = max_pixels
        self.out = out

    def read(self, path: str | None) -> tuple[np.ndarray, str]:
        if not path:
            raise message("Upload an image (or pick an example).")
        file = Path(path)
        try:
            with Image.open(file) as img:  # the header only: the size before any decoding
                width, height = img.size
        except Exception as exc:
            raise message(f"{file.name} is not an image this page can read ({type(exc).__name__})") from None
        if width * height > self.max_pixels:
            raise message(
                f"{file.name} is {width}x{height} = {width * height / 1e6:.1f} megapixels; this page takes "
                f"at most {self.max_pixels / 1e6:g} megapixels: resize it, or use lseg-pacl predict."
            )
        try:
            return read_rgb(file), file.stem
        except BadSample as exc:
            raise message(f"{file.name} is not a readable image ({exc.detail or exc.reason})") from None

    def _outputs_dir(self) -> Path:
        now = time.time()
        for old in self.out.iterdir() if self.out.is_dir() else []:
            if now - old.stat().st_mtime > KEEP_OUTPUTS_S:
                shutil.rmtree(old, ignore_errors=True)
        fresh = self.out / uuid.uuid4().hex
        fresh.mkdir(parents=True)
        return fresh

    def segment(self, path: str | None, labels: str, chosen) -> list:
        chosen = [chosen] if isinstance(chosen, str) else list(chosen or [])
        if not chosen:
            raise message("Choose one or two models.")
        if len(chosen) > SLOTS:
            raise message(f"Choose at most {SLOTS} models ({len(chosen)} chosen).")
        unknown = [c for c in chosen if c not in self.labels]
        if unknown:
            raise message(f"unknown model {unknown[0]!r}: reload the page")
        try:
            names = parse_labels(labels or "")
        except UserError as exc:
            raise message(str(exc)) from None
        rgb, stem = self.read(path)
        out = self._outputs_dir()
        results: list = []
        for value in chosen:
            label = self.labels[value]
            start = time.perf_counter()
            try:
                with self.models.use(value) as model:
                    ids = model.segment(rgb, names)
                    device = model.device.type
            except UserError as exc:  # missing weights, a bad key: the project's own message
                raise message(f"{label}: {exc}") from None
            except Exception as exc:
                log.exception("segmenting with %s failed", value)
                raise message(f"{label}: segmentation failed ({type(exc).__name__}: {exc}); "
                               f"the server's log has the details") from None
            seconds = time.perf_counter() - start
            png = out / f"{stem}_{_slug(label)}_labels.png"
            palette_png(ids, len(names)).save(png)
            results += [
                f"**{label}** · {device} · {seconds:.1f} s",
                overlay(rgb, ids, names, title=label),
                label_shares(ids, names),
                str(png),
            ]
        for _ in range(SLOTS - len(chosen)):
            results += ["*choose a second model to compare*", None, None, None]
        return results


def examples_from(world: Path | None, n: int = 8) -> list[Path]:
    """The first validation images of the synthetic world at ``world`` (none when it is not there)."""
    if world is None:
        return []
    folder = world / "ADEChallengeData2016" / "images" / "validation"
    return sorted(folder.glob("*.jpg"))[:n] if folder.is_dir() else []


def build(app: App, examples: list[Path], default_labels: str) -> gr.Blocks:
    default = [app.choices[0].value] if app.choices else []
    with gr.Blocks(title="lseg_pacl", analytics_enabled=False) as page:
        gr.Markdown(
            "## lseg_pacl: segment an image with your own words\n"
            "Upload an image, type the labels (comma-separated) and choose one or two models; each pixel "
            f"gets the label its model scores highest. Images up to {app.max_pixels / 1e6:g} megapixels."
        )
        with gr.Row():
            image = picture(label="image", type="filepath", height=320, sources=["upload", "clipboard"])
            with gr.Column():
                labels = gr.Textbox(label="labels", value=default_labels, placeholder="cat, grass, other")
                models = gr.Dropdown(
                    choices=[(c.label, c.value) for c in app.choices],
                    value=default,
                    multiselect=True,
                    max_choices=SLOTS,
                    label="models (one or two)",
                )
                run = gr.Button("Segment", variant="primary")
        if examples:
            gr.Examples([[str(p)] for p in examples], inputs=[image], label="synthetic validation images")
        outputs = []
        with gr.Row():
            for k in range(SLOTS):
                with gr.Column():
                    outputs += [
                        gr.Markdown(""),
                        gr.Image(label=f"overlay {k + 1}", type="pil", format="png", interactive=False),
                        gr.Label(label=f"share of the pixels {k + 1}"),
                        gr.File(label=f"label PNG {k + 1} (0 = the first label)"),
                    ]
        # one queue for both triggers: at most SLOTS requests at once, and each model serves one at a time
        # (Models.use), so two requests never run over each other on one model
        shared = {"concurrency_limit": SLOTS, "concurrency_id": "segment"}
        run.click(app.segment, [image, labels, models], outputs, api_name="segment", **shared)
        labels.submit(app.segment, [image, labels, models], outputs, api_name=False, **shared)
    return page.queue(max_size=32, default_concurrency_limit=1)


def serve(choices: list[Choice], overrides: list[str], host: str, port: int, max_pixels: int,
          world: Path | None, default_labels: str) -> None:
    out = Path(tempfile.mkdtemp(prefix="lseg_pacl_app_"))
    try:
        app = App(choices, Models(overrides), max_pixels, out)
        examples = examples_from(world)
        page = build(app, examples, default_labels)
        print(f"lseg-pacl app: {len(choices)} models; http://{host}:{port} (Ctrl-C stops it)", flush=True)
        page.launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            show_error=True,
            max_file_size=MAX_UPLOAD,
            allowed_paths=[str(p.parent) for p in examples[:1]],
            ssr_mode=False,
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)

"""``lseg-pacl app``: a web page (Gradio) that segments an uploaded image with your own words, one or two
models side by side. ``models`` finds and caches the models and segments one image as ``predict`` does;
``page`` builds the page and its error messages. Gradio is an optional extra (``pip install -e ".[app]"``):
only ``page`` imports it."""

import os

# Before gradio is imported: no telemetry, no version check, nothing fetched from the Hub.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

"""The embedded world: a small procedurally drawn dataset for tests, smoke runs and CPU experiments.

Scenes of stuff (sky, wall, grass, water, sand) and things (ball, box, tree, house, sun) are drawn with numpy
(render), captioned from what is visible (captions) and written as COCO captions plus ADE20K masks (writer),
so that the real readers serve it and a full run needs no download.  Generation is deterministic.
"""

from data_modules.synthetic.render import CLASS_NAMES, render_image
from data_modules.synthetic.writer import FORMAT, VERSION, generate, is_complete

__all__ = ["CLASS_NAMES", "FORMAT", "VERSION", "generate", "is_complete", "render_image"]

"""The `paper` presets hold the official repositories' values, benchmark by benchmark; `unified` gives every
method the same protocol."""

import pytest

from lseg_pacl.config.loading import eval_for, load_config
from lseg_pacl.evaluation.evaluator import protocol_key
from lseg_pacl.evaluation.settings import precision_for

EIGHT = ("voc21", "context60", "coco_object", "voc20", "context59", "coco_stuff171", "cityscapes", "ade20k")
KEYS = ("names", "mode", "short_side", "crop", "stride", "logit_scale", "bg_threshold", "bg_area",
        "pamr_iterations")

# (short side, mode, crop, stride, logit scale, prob_thd, area_thd, PAMR iterations) and where each comes
# from.
SCLIP = "wangf3014/SCLIP@b56bd30"
NACLIP = "sinahmr/NACLIP@0cac3a6"
CLEARCLIP = "mc-lan/ClearCLIP@ad68a40"


def row(names, short, mode, crop, stride, scale, thd, area, pamr, where):
    return dict(names=names, short_side=short, mode=mode, crop=crop, stride=stride, logit_scale=scale,
                bg_threshold=thd, bg_area=area, pamr_iterations=pamr, where=where)


def sclip(bench):
    base = f"{SCLIP} clip_segmentor.py:19-21 (defaults), configs/cfg_{bench}.py"
    values = {
        "voc21": (336, 65, 0.1, 0.1, "configs/cfg_voc21.py:6-8, :17"),
        "context60": (336, 50, 0.1, None, "configs/cfg_context60.py:6-7, :16"),
        "coco_object": (336, 50, 0.1, None, "configs/cfg_coco_object.py:6-7, :16"),
        "coco_stuff171": (448, 40, 0.0, None, "configs/cfg_coco_stuff164k.py:14"),
        "cityscapes": (560, 40, 0.0, None, "configs/cfg_city_scapes.py:14"),
    }.get(bench, (336, 40, 0.0, None, "configs/cfg_*.py:14 Resize(scale=(2048, 336))"))
    short, scale, thd, area, where = values
    return row("sclip", short, "slide", 224, 112, scale, thd, area, 0, f"{base}; {where}")


def naclip(bench):
    whole = bench in ("voc21", "voc20")  # configs/cfg_voc21.py:7, cfg_voc20.py:6 slide_crop=0
    # configs/cfg_{voc21,context60,coco_object}.py:6
    thd = 0.1 if bench in ("voc21", "context60", "coco_object") else 0.0
    short = 560 if bench == "cityscapes" else 336  # configs/cfg_city_scapes.py:14
    where = f"{NACLIP} naclip.py:20-22 (defaults), eval.py:56-57 (--pamr on), configs/cfg_{bench}.py:6-7, :14"
    return row("sclip", short, "whole" if whole else "slide", 224, 112, 40, thd, None, 10, where)


def clearclip(bench):
    thd = {"voc21": 0.5, "context60": 0.15, "coco_object": 0.4}.get(bench, 0.0)  # configs/cfg_*.py:6
    crop, stride = (224, 224) if bench == "cityscapes" else (448, 224)  # cfg_city_scapes.py:6; segmentor :23
    where = f"{CLEARCLIP} clearclip_segmentor.py:22-23 (defaults), configs/cfg_{bench}.py:6, :14-15 (448)"
    return row("clearclip", 448, "slide", crop, stride, 50, thd, None, 0, where)


OFFICIAL = {"clip": sclip, "maskclip": sclip, "sclip": sclip, "naclip": naclip, "clearclip": clearclip}


@pytest.mark.parametrize("method", list(OFFICIAL))
def test_paper_presets_hold_the_official_values(method):
    cfg = load_config(f"baseline_{method}", ["eval.preset=paper"])
    assert cfg.model.clip.pos_embed == "lineage"  # every repository's bicubic (g+0.1)/g resampling
    for bench in EIGHT:
        e = eval_for(cfg.eval, bench)
        expected = OFFICIAL[method](bench)
        got = {k: e[k] for k in KEYS}
        assert got == {k: expected[k] for k in KEYS}, f"{method} {bench}: {expected['where']}"
        shared = (e.templates, e.background, e.resize_backend, e.remainder, e.precision, list(e.scales),
                  e.flip)
        assert shared == ("imagenet80", "softmax", "cv2", "drop", "fp16", [1.0], False), expected["where"]
        assert e.pamr_iterations == 0 or list(e.pamr_dilations) == [8, 16]  # naclip.py:21 pamr_stride


def test_unified_gives_every_method_one_protocol_per_benchmark():
    import torch

    cfgs = [load_config(f"baseline_{m}", ["eval.preset=unified"]) for m in OFFICIAL]
    for bench in EIGHT:
        keys = {protocol_key(c, bench, 16, torch.device("cpu")) for c in cfgs}
        assert len(keys) == 1, bench
        labels = {(eval_for(c.eval, bench).names, eval_for(c.eval, bench).bg_threshold) for c in cfgs}
        assert len(labels) == 1


def test_presets_give_way_to_the_command_line_and_fp16_runs_fp32_on_the_cpu():
    import torch

    cfg = load_config("baseline_naclip",
                      ["eval.preset=paper", "eval.pamr_iterations=0", "eval.logit_scale=30"])
    assert cfg.eval.pamr_iterations == 0 and eval_for(cfg.eval, "voc21").logit_scale == 30
    assert precision_for(cfg, cfg.eval, torch.device("cpu")) == "fp32"
    assert precision_for(cfg, cfg.eval, torch.device("cuda")) == "fp16"


def test_a_method_without_a_paper_preset_is_told_so():
    from lseg_pacl.errors import ConfigError

    with pytest.raises(ConfigError, match="no 'paper' preset for pacl"):
        load_config("demo_pacl", ["eval.preset=paper"])
    with pytest.raises(ConfigError, match="no 'best' preset"):
        load_config("baseline_sclip", ["eval.preset=best"])

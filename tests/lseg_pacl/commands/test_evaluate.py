"""``lseg-pacl eval`` end to end on the small synthetic world: every output, and ``score`` agreeing with
it."""

import csv
import json
from pathlib import Path

import pytest

from lseg_pacl.commands.cli import main


@pytest.fixture
def eval_args(world, tmp_path):
    return [
        "logger.wandb.mode=disabled",
        f"run.root={tmp_path / 'runs'}",
        f"data.synthetic.out={world}",
        "data.synthetic.n_train=48",
        "data.synthetic.n_val=8",
        "data.num_workers=0",
    ]


def eval_dir(tmp_path: Path, experiment: str) -> Path:
    (out,) = (tmp_path / "runs" / experiment).glob("eval-*")
    return out


@pytest.mark.slow
def test_eval_writes_every_field_and_score_agrees(eval_args, world, tmp_path, capsys):
    assert (
        main(
            [
                "eval",
                "demo_clip",
                *eval_args,
                "save_predictions=true",
                "pictures=2",
                "analysis=[patch_accuracy,coherence]",
                "coherence_pairs=500",
            ]
        )
        == 0
    )
    out = eval_dir(tmp_path, "demo_clip")
    results = json.loads((out / "results.json").read_text())
    r = results["synthetic"]
    assert set(r) >= {"mIoU", "aAcc", "per_class", "images", "skipped", "settings", "analysis"}
    assert r["images"] == 8 and len(r["per_class"]) == 10 and 0 <= r["mIoU"] <= 1 and 0 <= r["aAcc"] <= 1
    assert r["settings"]["mode"] == "whole" and r["settings"]["templates"] == "pacl7"
    assert set(r["analysis"]["model"]) == {"patch_accuracy", "coherence_auroc"}
    assert "| synthetic |" in (out / "results.md").read_text()
    with open(out / "results.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 1 + 10
    assert len(list((out / "pictures" / "synthetic").glob("*.png"))) == 2
    preds = out / "predictions" / "synthetic"
    assert len(list(preds.glob("*.png"))) == 8
    capsys.readouterr()
    assert main(["score", "dataset=synthetic", f"root={world}", f"pred_dir={preds}"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["mIoU"] == pytest.approx(r["mIoU"]) and scored["per_class"] == pytest.approx(r["per_class"])


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["maskclip", "sclip", "clearclip", "naclip"])
def test_training_free_variants_evaluate_with_the_slide_protocol(eval_args, tmp_path, variant):
    assert (
        main(
            [
                "eval",
                "demo_clip",
                *eval_args,
                f"model.clip.last_block={variant}",
                "mode=slide",
                "crop=32",
                "stride=16",
                "templates=imagenet80",
                "flip=true",
                "pictures=0",
                "max_images=2",
            ]
        )
        == 0
    )
    r = json.loads((eval_dir(tmp_path, "demo_clip") / "results.json").read_text())["synthetic"]
    assert r["images"] == 2 and r["settings"]["model"] == f"clip: lseg-tiny-vit ({variant})"


def test_eval_names_a_missing_benchmark(eval_args, tmp_path, capsys):
    assert main(["eval", "demo_clip", *eval_args, "benchmarks=[voc20]", f"data.root={tmp_path}"]) == 3
    assert "ImageSets/Segmentation/val.txt" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_logs_its_table_to_an_offline_wandb_run_without_the_key(eval_args, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "local-" + "x" * 40)
    args = [a for a in eval_args if not a.startswith("logger.wandb")]
    assert main(["eval", "demo_clip", *args, "logger.wandb.mode=offline", "max_images=2", "pictures=1"]) == 0
    runs = list((eval_dir(tmp_path, "demo_clip") / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    for f in eval_dir(tmp_path, "demo_clip").rglob("*"):
        if f.is_file():
            assert b"x" * 40 not in f.read_bytes(), f


@pytest.mark.slow
def test_an_older_results_file_is_kept_aside_not_crashed_on(eval_args, tmp_path):
    from lseg_pacl.evaluation.report import write_reports

    out = tmp_path / "eval"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"synthetic": {"mIoU": 0.1, "images": 3}}))  # an old format
    new = {
        "synthetic": {
            "mIoU": 0.2,
            "aAcc": 0.5,
            "per_class": {"sky": 0.2},
            "images": 4,
            "skipped": 0,
            "settings": {
                "mode": "whole",
                "short_side": 64,
                "crop": 224,
                "stride": 112,
                "scales": [1.0],
                "flip": False,
                "model": "clip: x",
                "templates": "raw",
            },
        }
    }
    merged = write_reports(out, new, "t")
    assert merged == new and json.loads((out / "results.old-1.json").read_text())["synthetic"]["images"] == 3
    assert "| synthetic | 20.00 |" in (out / "results.md").read_text()


@pytest.mark.slow
def test_synonym_files_are_given_in_short_form(eval_args, tmp_path):
    from data_modules.synthetic import CLASS_NAMES

    names = tmp_path / "names.json"
    names.write_text(json.dumps([[n, f"the {n}"] for n in CLASS_NAMES]))
    assert (
        main(
            ["eval", "demo_clip", *eval_args, f"class_names.synthetic={names}", "max_images=2", "pictures=0"]
        )
        == 0
    )
    assert (
        json.loads((eval_dir(tmp_path, "demo_clip") / "results.json").read_text())["synthetic"]["images"] == 2
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(["sky"]))
    assert main(["eval", "demo_clip", *eval_args, f"class_names.synthetic={bad}"]) == 2


@pytest.mark.slow
def test_several_models_in_one_process_and_their_table(world, tiny_clip_file, tmp_path, capsys):
    """``eval models=[...] preset=unified`` writes each row's results; ``table`` prints exactly those
    numbers."""
    rows = ["baseline_clip", "baseline_maskclip", "baseline_sclip", "baseline_clearclip", "baseline_naclip"]
    args = ["eval", f"models=[{','.join(rows)}]", "preset=unified", "benchmarks=[synthetic]",
            "model.clip.name=lseg-tiny-vit", f"model.clip.pretrained={tiny_clip_file}",
            f"data.val.roots.synthetic={world}", "short_side=48", "crop=32", "stride=16", "max_images=3",
            "pictures=0", "data.num_workers=0", "logger.wandb.mode=disabled", f"run.root={tmp_path / 'runs'}"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    results = {row: json.loads((eval_dir(tmp_path, row) / "results.json").read_text())["synthetic"]
               for row in rows}
    assert len({r["protocol_hash"] for r in results.values()}) == 1
    labels = [r["settings"]["method"] for r in results.values()]
    assert labels == ["CLIP", "MaskCLIP", "SCLIP", "ClearCLIP", "NACLIP"]
    assert "lseg-pacl table runs=" in printed
    assert main(["table", f"runs={tmp_path / 'runs'}", f"out={tmp_path / 'table'}", "wandb=disabled"]) == 0
    with open(tmp_path / "table" / "table.csv", newline="", encoding="utf-8") as f:
        table = {line["method"]: line for line in csv.DictReader(f)}
    for r in results.values():
        assert float(table[r["settings"]["method"]]["synthetic"]) == pytest.approx(100 * r["mIoU"], abs=0.005)


def test_models_named_twice_or_a_checkpoint_without_protocol_are_refused(capsys):
    assert main(["eval", "models=[baseline_sclip,baseline_sclip]"]) == 2
    assert "baseline_sclip named twice" in capsys.readouterr().err
    assert main(["eval", "models=[runs/x/checkpoints/last.ckpt]"]) == 2
    assert "name the experiment" in capsys.readouterr().err
    assert main(["eval", "benchmarks=[voc20]"]) == 2
    assert "models=[EXP,...]" in capsys.readouterr().err


# The ten training-free rows; the defaults of the newer ones count ViT-B/16's 12 blocks, so the 4-block test
# CLIP gets its own layers through the per-method options (one mapping for all rows).
ROW_NAMES = ("clip", "maskclip", "sclip", "clearclip", "naclip", "resclip", "scclip", "cliptrase", "pearl",
             "proxyclip")
ALL_ROWS = [f"baseline_{row}" for row in ROW_NAMES]
TINY_OPTIONS = ["method_options.resclip.rcs_layers=[1,2,3]", "method_options.scclip.pre_adjust_layer=2",
                "method_options.scclip.post_adjust_layer=1", "method_options.scclip.multi_layers=[1,2,3]",
                "method_options.scclip.lof_k=8", "method_options.cliptrase.correlation_layer=3",
                "method_options.proxyclip.vfm=vit_small_patch8_224",
                "method_options.proxyclip.vfm_weights=null"]


@pytest.mark.slow
def test_every_training_free_row_in_one_process_and_one_table(world, tiny_clip_file, tmp_path, capsys):
    args = ["eval", f"models=[{','.join(ALL_ROWS)}]", "preset=unified", "benchmarks=[synthetic]",
            "model.clip.name=lseg-tiny-vit", f"model.clip.pretrained={tiny_clip_file}",
            f"data.val.roots.synthetic={world}", "short_side=48", "crop=32", "stride=16", "max_images=2",
            "pictures=0", "data.num_workers=0", "logger.wandb.mode=disabled", f"run.root={tmp_path / 'runs'}",
            *TINY_OPTIONS]
    assert main(args) == 0
    results = {row: json.loads((eval_dir(tmp_path, row) / "results.json").read_text())["synthetic"]
               for row in ALL_ROWS}
    assert len({r["protocol_hash"] for r in results.values()}) == 1
    assert results["baseline_resclip"]["settings"]["method_options"]["rcs_layers"] == [1, 2, 3]
    capsys.readouterr()
    assert main(["table", f"runs={tmp_path / 'runs'}", f"out={tmp_path / 'table'}", "wandb=disabled"]) == 0
    with open(tmp_path / "table" / "table.csv", newline="", encoding="utf-8") as f:
        table = {line["method"]: line for line in csv.DictReader(f)}
    assert set(table) == {r["settings"]["method"] for r in results.values()} and len(table) == 10
    for r in results.values():
        assert float(table[r["settings"]["method"]]["synthetic"]) == pytest.approx(100 * r["mIoU"], abs=0.005)

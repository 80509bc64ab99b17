"""The W&B API key (read from the environment only) is in no file a run writes."""

from pathlib import Path

from lseg_pacl.runner import train

SENTINEL = "sentinel0123456789abcdef0123456789abcdef"  # 40 characters, like a real key


def test_the_api_key_is_in_no_file_of_a_run(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SENTINEL)
    target = tmp_path / "run"
    train("demo_clip", [*tiny, "logger.wandb.mode=offline", f"run.dir={target}", "trainer.val_check_interval=2"])
    files = [p for p in Path(target).rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and any(p.suffix == ".ckpt" for p in files)
    leaked = [str(p) for p in files if SENTINEL.encode() in p.read_bytes()]
    assert leaked == []

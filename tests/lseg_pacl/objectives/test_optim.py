"""The learning-rate schedule (objectives/optim.py), per step or per epoch."""

import pytest
import torch
from omegaconf import OmegaConf

from lseg_pacl.errors import ConfigError
from lseg_pacl.objectives.optim import configure_optimization


def optim(**kw):
    base = dict(name="sgd", lr=0.001, weight_decay=1e-4, betas=[0.9, 0.999], eps=1e-8, schedule="poly",
                schedule_interval="step", poly_power=0.9, momentum=0.9, warmup_steps=0)
    return OmegaConf.create({**base, **kw})


def groups():
    return [([("w", torch.nn.Parameter(torch.zeros(2)))], 1.0)]


def test_poly_per_epoch_is_the_official_lambda():
    """lang-seg: LambdaLR(lambda x: (1 - x / epochs) ** 0.9), stepped by Lightning once per epoch."""
    epochs = 7
    conf = configure_optimization(groups(), optim(schedule_interval="epoch"), total_steps=700,
                                  total_epochs=epochs)
    assert conf["lr_scheduler"]["interval"] == "epoch"
    scheduler = conf["lr_scheduler"]["scheduler"]
    for x in range(epochs):
        official = 0.001 * (1 - x / epochs) ** 0.9
        assert conf["optimizer"].param_groups[0]["lr"] == pytest.approx(official, rel=1e-12)
        scheduler.step()


def test_poly_per_step_spans_the_steps():
    conf = configure_optimization(groups(), optim(), total_steps=10, total_epochs=3)
    assert conf["lr_scheduler"]["interval"] == "step"
    scheduler = conf["lr_scheduler"]["scheduler"]
    for _ in range(5):
        scheduler.step()
    assert conf["optimizer"].param_groups[0]["lr"] == pytest.approx(0.001 * 0.5 ** 0.9, rel=1e-12)


@pytest.mark.parametrize("kw,epochs,match", [(dict(schedule_interval="epoch"), None, "max_epochs"),
                                             (dict(schedule_interval="epoch"), -1, "max_epochs"),
                                             (dict(schedule_interval="batch"), 3, "one of step, epoch")])
def test_a_schedule_it_cannot_span_is_a_config_error(kw, epochs, match):
    with pytest.raises(ConfigError, match=match):
        configure_optimization(groups(), optim(**kw), total_steps=10, total_epochs=epochs)

"""LSeg's zero-shot episodes (PASCAL-5i, COCO-20i, FSS-1000, and the embedded world), as the official code
(isl-org/lang-seg @ bb00b21, fewshot_data/ = HSNet's loaders) builds and orders them.

folds: which classes a fold holds, class names; lists: the official episode lists; sampling: the episode
order and the training draws; frames: reading and resizing one image or mask; layouts: where the files lie;
dataset: ``EpisodeSet``. The meter is lseg_pacl/evaluation/episodes.py.
"""

from data_modules.episodes.dataset import EpisodeSet, collate_episodes
from data_modules.episodes.folds import BENCHMARKS, class_names, fold_classes
from data_modules.episodes.sampling import MIN_FRACTION, Episode

__all__ = [
    "BENCHMARKS",
    "MIN_FRACTION",
    "Episode",
    "EpisodeSet",
    "class_names",
    "collate_episodes",
    "fold_classes",
]

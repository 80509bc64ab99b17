"""lseg_pacl: open-vocabulary semantic segmentation experiments (LSeg, PACL, training-free CLIP baselines)."""

__version__ = "0.1.0"

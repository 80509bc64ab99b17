"""Datasets and LightningDataModules: COCO-style captions, ADE20K-style masks, and the embedded synthetic
world."""

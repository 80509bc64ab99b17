"""Networks: open_clip CLIP with dense features (clip.py) and PACL's embedder and compatibility (pacl.py)."""

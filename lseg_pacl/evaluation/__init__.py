"""Zero-shot evaluation: the metric, inference modes, label sets, diagnostics, pictures and reports."""

"""Configuration: the schema (schema.py), reading experiments and overrides into one config (loading.py), and
the checks of what a config may hold and what a command needs (validation.py)."""

"""The `kew-plug` command (also `python -m kew_plug`): run workers, look inside a store."""

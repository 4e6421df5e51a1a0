"""Run directories and resumable sweeps: ``store`` (one run on disk), ``spec`` (grids),
``run`` (``run_sweep``), ``cost`` (cost model, ``plan``), ``index`` (layout, keys,
SQLite index), ``executors``."""

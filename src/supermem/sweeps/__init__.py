"""Run directories and resumable sweeps: ``store`` (one run on disk), ``spec`` (grids,
cost model, ``run_sweep``), ``index`` (layout, keys, SQLite index), ``executors``."""

"""advisor sweep: find the learning rate with probe runs as optuna trials, and report it the way
the seeds' experiments did (002: four LRs side by side; 003: a status label per LR).

Modules: ``analysis`` (pure: range-test suggestions, labels, band, sensitivity, convergence),
``records`` (one run, JSON-safe), ``study`` (optuna storage, queue, workers, resumption),
``runner`` (strategies over probe runs), ``report`` (README.md, JSON, plots), ``calibrate``
(--write-rules). optuna, torch and the probe are imported only when a sweep runs.
"""

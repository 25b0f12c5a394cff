"""Training: models and datasets by name (``models``, ``data``), the run configuration
(``config``), building a configuration's model (``assembly``), the trainer and its checkpoints.
Import the modules themselves: loading a configuration must not load models or data."""

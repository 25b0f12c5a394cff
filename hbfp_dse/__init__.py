"""hbfp-dse: design-space exploration of narrow number formats for DNN training."""

__version__ = "0.1.0"

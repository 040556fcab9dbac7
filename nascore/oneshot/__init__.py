"""One-shot architecture search: a weight-sharing supernet built from any search-space file, single-path training,
subnet extraction with inherited weights, and candidate scoring after batch-norm recalibration."""

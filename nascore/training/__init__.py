"""Data sets, the trainer every evaluation uses, and retraining a chosen architecture at full budget."""

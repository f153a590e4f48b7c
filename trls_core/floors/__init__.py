"""Non-deep baselines ("floors") that a learned representation has to beat to be worth its cost."""

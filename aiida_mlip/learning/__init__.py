"""The active-learning loop's science without AiiDA: initial structures, convergence, calibration."""

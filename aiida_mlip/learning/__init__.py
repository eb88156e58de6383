"""The active-learning loop's science without AiiDA: initial structures, calibration, convergence, the loop.

Nothing here imports AiiDA; the work chain calls these functions and records their results as nodes.
"""

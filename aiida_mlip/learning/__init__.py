"""The AiiDA-free side of active learning: initial structures, calibration, convergence, the loop.

Nothing here imports AiiDA; the work chain calls these functions and records their results as nodes.
"""

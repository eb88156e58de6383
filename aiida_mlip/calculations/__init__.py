"""CalcJobs wrapping the engine executables."""

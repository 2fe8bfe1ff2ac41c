"""Solvers of the mean-field equations (SPEC §9) on grids."""

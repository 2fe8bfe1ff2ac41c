"""Numba kernels: arrays and floats in, preallocated arrays out. No Python objects."""

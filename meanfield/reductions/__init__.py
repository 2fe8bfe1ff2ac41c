"""Exact low-dimensional models that particle runs are checked against."""

from .bilinear_moments import bilinear_moment_ode

__all__ = ["bilinear_moment_ode"]

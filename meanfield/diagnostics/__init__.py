"""Diagnostics computed from states or run files."""

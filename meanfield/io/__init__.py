"""Input/output: TOML parameter files and HDF5 run files."""

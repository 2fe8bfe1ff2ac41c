"""The click application of meanfield (installed as ``meanfield_cli``)."""

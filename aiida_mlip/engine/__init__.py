"""Executables run on compute nodes: files in, files out, no AiiDA."""

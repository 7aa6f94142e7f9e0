"""Datums, inputs, outputs and lineage: every file an execution sees or makes."""

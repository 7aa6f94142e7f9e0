"""vhtui: a local-first, Valohai-compatible ML workbench for the terminal."""

__version__ = "0.1.0"

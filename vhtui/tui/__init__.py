"""The Textual workbench: it reads the store and log files, and asks the engine to act."""

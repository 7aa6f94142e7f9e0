"""Widgets of the workbench, grouped by the data they show."""

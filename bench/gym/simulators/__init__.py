"""Calibrated simulators for task families with no public table of measured outcomes."""

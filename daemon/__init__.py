"""Daemon half: parsing, preprocessing, inference and publishing of measured spectra."""

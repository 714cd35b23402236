"""xpstream: shift-invariant analysis of XPS spectra, from synthetic training data to a live daemon."""

__version__ = "0.1.0"

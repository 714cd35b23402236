"""xpstream: shift-invariant analysis of XPS spectra, from synthetic training data to a live daemon.

    import xpstream
    predictions = xpstream.analyse("measurements/")   # files, folders, regions or grid spectra
    frame = xpstream.to_frame(predictions)            # pandas, one row per spectrum

The API (`analyse`, `load_model`, `to_frame`, `Prediction`) is imported on first use, so that
importing a sub-package stays light.
"""

__version__ = "0.3.0"
API = ("analyse", "load_model", "to_frame", "Prediction", "Region")


def __getattr__(name: str):
    if name in API:
        from xpstream import api

        return getattr(api, name)
    raise AttributeError(f"module 'xpstream' has no attribute {name!r}")

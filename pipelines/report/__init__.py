"""The report: generated result files, the README's table of apps and a static results page (``__main__``)."""

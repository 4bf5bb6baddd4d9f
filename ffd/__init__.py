"""The ``ffd`` command line: a thin shell over ``edge``, ``calib`` and ``train``."""

"""Layer 5: the ``vbp-live`` command. Nothing in the library imports this package."""

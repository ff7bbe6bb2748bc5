"""Unsupervised hierarchical 3D segmentation with hyperbolic representations.

Importing the package is cheap: torch, geoopt and Qt are imported only by the modules that need them.
"""

__version__ = "0.1.0"

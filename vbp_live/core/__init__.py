"""Layer 1: pure geometry, preprocessing and rendering. Imports numpy and OpenCV only."""

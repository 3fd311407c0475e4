"""Layer 3: Udacity-style recordings -> synchronized, filtered, cropped training datasets."""

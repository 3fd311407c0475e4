"""Layer 4: comparison figures (``vbp-live explain``) and the quantitative evaluation (``vbp-live evaluate``)."""

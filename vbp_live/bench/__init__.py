"""Layer 4: benchmarks (compose models and attribution; print nothing, return rows)."""

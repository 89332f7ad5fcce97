"""The bottom layer: labels, results, errors, metrics and paths. No torch, no media."""

"""Training: manifests, prepared-data cache, datasets, the loop, the stages, pseudo-fakes, dataset adapters, the recipe."""

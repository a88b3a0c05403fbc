"""Pseudo-fakes made from real media, for training on real data only."""

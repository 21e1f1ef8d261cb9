"""Rewards: the provider protocols and the built-in providers."""

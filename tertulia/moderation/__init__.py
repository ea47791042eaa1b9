"""Moderation: the store's written comment policy as automatic checks, per-store thresholds, and an audit of every decision."""

"""Template tags of the staff dashboard."""

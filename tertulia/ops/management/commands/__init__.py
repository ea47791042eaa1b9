"""`tertulia demo`, `tertulia serve` and `tertulia import`."""

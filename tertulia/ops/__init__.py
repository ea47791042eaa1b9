"""Operations: the demo, the production web server and CSV import, as `tertulia` commands."""

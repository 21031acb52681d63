"""The catalogs as assets, and the sensor that backfills series that appear in them."""

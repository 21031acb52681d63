"""What the live collector writes, as external assets whose freshness a sensor reports."""

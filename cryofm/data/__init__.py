"""cryofm.data."""

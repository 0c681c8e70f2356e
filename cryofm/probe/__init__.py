"""cryofm.probe."""

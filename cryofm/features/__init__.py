"""cryofm.features."""

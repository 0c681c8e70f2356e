"""cryofm.train."""

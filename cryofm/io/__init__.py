"""cryofm.io."""

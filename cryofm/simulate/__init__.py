"""cryofm.simulate."""

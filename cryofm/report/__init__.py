"""cryofm.report."""

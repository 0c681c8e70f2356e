"""cryofm.picking."""

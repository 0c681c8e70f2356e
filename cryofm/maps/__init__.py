"""cryofm.maps."""

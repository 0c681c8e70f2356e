"""cryofm.ssl."""

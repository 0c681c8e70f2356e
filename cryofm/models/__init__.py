"""cryofm.models."""

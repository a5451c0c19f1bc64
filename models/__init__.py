"""Training recipes (YAML), installed as package data ``mtvr.recipes`` so that a wheel ships them."""

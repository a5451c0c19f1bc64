"""Templates uploaded beside every published model and dataset (installed as ``mtvr.hub.templates``)."""

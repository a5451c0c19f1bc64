"""The Hugging Face Hub: downloading model folders (``download``), uploading folders (``upload``) and
model cards with ``model-index`` (``card``). The card and ``evaluate.py`` templates are package data
under ``mtvr.hub.templates`` (the top-level ``hub/`` folder of the source tree)."""

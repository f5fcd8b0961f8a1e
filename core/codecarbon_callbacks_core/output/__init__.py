"""Output methods: one module per method, plus the sender and the spool for records owed to an
endpoint. ``codecarbon_callbacks.output`` re-exports them under CodeCarbon's names."""

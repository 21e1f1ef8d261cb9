"""CRM connectors: the built-in ``csv`` connector type and its options."""

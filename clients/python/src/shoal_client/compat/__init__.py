"""Drop-in replacements for other clients' APIs (``shoal_client.compat.zato``)."""

"""Compatibility namespace: Zato service code imports from here and gets Shoal's classes."""

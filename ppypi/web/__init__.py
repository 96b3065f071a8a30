"""The HTTP side: Klein applications and their helpers."""

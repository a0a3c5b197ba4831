"""The waiting page, error page and dashboard templates (shipped as package data)."""

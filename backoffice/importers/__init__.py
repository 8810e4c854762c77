"""Parsers for public facility files; they read and validate, services write."""

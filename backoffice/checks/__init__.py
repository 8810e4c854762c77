"""Automated checks and their source clients: they read and judge; services write."""

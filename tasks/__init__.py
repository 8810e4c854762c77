"""Celery: the app bound to Flask, the beat schedule and thin tasks that call services."""

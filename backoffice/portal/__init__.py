"""The provider-facing pages."""

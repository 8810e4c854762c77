"""The domain: every state change lives here. Services flush, never commit."""

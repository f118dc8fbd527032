"""oidcproxy: an authenticating reverse proxy for OpenID Connect. See docs/architecture.md for the map."""

__all__ = ["__version__"]

__version__ = "0.1.0"

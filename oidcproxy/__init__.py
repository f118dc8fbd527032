"""oidcproxy: an authenticating reverse proxy for OpenID Connect. See DESIGN.md for the map."""

__all__ = ["__version__"]

__version__ = "0.1.0"

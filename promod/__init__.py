"""promod: a self-hosted promotion daemon.

Plugins implement hooks with ``promod.hookimpl`` (see ``promod.plugins.hookspecs``).
"""

from promod.plugins.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]

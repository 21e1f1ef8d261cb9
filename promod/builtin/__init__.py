"""Built-in plugins: the default providers, channels, connectors and commands.

They are registered through the same hooks as outside plugins (see
``promod.plugins.host.DEFAULT_PLUGINS``).
"""

"""CRM sync: connectors, the full-refresh pipeline, response export, admin commands.

A ``[crm.NAME]`` section makes one connector (a plugin type registered through
``promod_register_crm_connectors``) that fills one list under one consent; see
docs/crm.md for the operator's view and docs/plugins.md for the connector protocol.
"""

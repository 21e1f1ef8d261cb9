"""Customers and their behaviour: records, all-or-nothing imports, admin commands.

``records`` validates customer and event records (shared with the HTTP API);
``imports`` stages and commits streamed imports; ``commands`` registers the admin
commands ``customers.import.*``, ``events.import.*`` and ``customers.show``::

    from promod.customers.commands import register_customer_commands
    register_customer_commands(app.commands)
"""

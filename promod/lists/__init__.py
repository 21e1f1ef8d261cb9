"""Custom lists: named sets of customer ids that campaigns and segments target.

``store`` keeps the versioned lists (replace atomically, add, delete, show);
``imports`` is the all-or-nothing streamed import behind ``promodctl lists import``;
``commands`` the admin commands ``lists.*``; the HTTP routes are in
:mod:`promod.http.lists`.
"""
